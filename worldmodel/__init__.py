"""worldmodel: teach a neural network to be an Atari game (IRIS-style VQ-VAE + GPT)."""
