"""The two forms a frame takes: uint8 (..., H, W, 3) as the emulator and the screen have it,
and float (..., 3, H, W) in [0, 1] as the networks take it."""

from typing import TypeVar

import numpy as np
import torch

FrameSequence = TypeVar("FrameSequence", np.ndarray, torch.Tensor)


def to_float_frames(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, 3) or float (..., 3, H, W) in [0, 1] -> float (..., 3, H, W) in [0, 1]."""
    if frames.dtype == torch.uint8:
        return frames.movedim(-1, -3).float() / 255.0
    return frames


def to_uint8_frames(frames: torch.Tensor) -> torch.Tensor:
    """float (..., 3, H, W) in [0, 1] (clamped) -> uint8 (..., H, W, 3)."""
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8).movedim(-3, -1)


def windows(frames: FrameSequence, n: int) -> FrameSequence:
    """(B, T, ...) -> (B, T, n, ...): at step t the n frames up to t, oldest first. Before a
    sequence's first frame that frame repeats (an episode's start shows nothing moving)."""
    index = np.arange(frames.shape[1])[:, None] + np.arange(1 - n, 1)[None]
    index = np.maximum(index, 0)
    if isinstance(frames, torch.Tensor):
        return frames[:, torch.from_numpy(index).to(frames.device)]
    return frames[:, index]
