#!/usr/bin/env bash
# The Python packages worldmodel needs that the GPU machine's image lacks (it has torch,
# lightning, numpy, scipy, matplotlib, imageio, pillow; it cannot download), as Python 3.12
# x86-64 wheels in .gpu_wheels/ (git-ignored) for experiments/gpu/train_and_eval.sh to carry.
# Run here, where PyPI is reachable: bash experiments/gpu/fetch_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PIP=${PIP:-.venv/bin/pip}
rm -rf .gpu_wheels && mkdir -p .gpu_wheels
# Pinned to what this project's venv runs; lpips only for its import (the LPIPS term is off
# by default, so its 64 MB of backbone weights stay behind).
"$PIP" download --quiet --no-deps --dest .gpu_wheels --python-version 3.12 \
  --only-binary=:all: --platform manylinux_2_28_x86_64 --implementation cp \
  ale-py==0.12.1 gymnasium==1.4.0 farama-notifications==0.0.6 hydra-core==1.3.8 \
  omegaconf==2.3.1 lpips==0.1.4 einops==0.8.2
"$PIP" download --quiet --no-deps --dest .gpu_wheels antlr4-python3-runtime==4.9.3
du -sh .gpu_wheels
