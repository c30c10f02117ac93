"""worldmodel: teach a neural network to be an Atari game (IRIS-style VQ-VAE + GPT)."""

import logging

# The CUDA build of torch says this on every machine without a GPU when torch.compile loads
# its C++ toolchain; it means nothing there (compiling for the CPU needs no CUDA runtime).
logging.getLogger("torch.utils.cpp_extension").addFilter(
    lambda record: not record.getMessage().startswith("No CUDA runtime is found")
)
