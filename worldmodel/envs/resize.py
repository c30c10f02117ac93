"""Area-interpolated frame resizing as two small matrix products (batched, no pixel loops)."""

import numpy as np


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix whose row i averages the input cells covered by output cell i.

    Each output cell spans n_in / n_out input cells; partially covered cells count with
    the covered fraction. This is exactly what OpenCV's INTER_AREA does when shrinking.
    """
    scale = n_in / n_out
    starts = np.arange(n_out)[:, None] * scale
    ends = starts + scale
    cells = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(ends, cells + 1) - np.maximum(starts, cells), 0.0, None)
    return (overlap / scale).astype(np.float32)


class AreaResize:
    """Resize uint8 frames (..., H, W, C) to (..., h, w, C) with area interpolation.

    Area interpolation matters for Pong: the ball is 2x4 pixels in the 210x160 frame, and a
    bilinear resize without antialiasing drops it entirely at 64x64 in some frames.
    """

    def __init__(self, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> None:
        self.in_hw = tuple(in_hw)
        self.out_hw = tuple(out_hw)
        self.rows = area_weights(in_hw[0], out_hw[0])
        self.cols = area_weights(in_hw[1], out_hw[1])

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        if frames.shape[-3:-1] != self.in_hw:
            raise ValueError(f"expected frames of size {self.in_hw}, got {frames.shape[-3:-1]}")
        # Channels-first so both products are plain (batched) BLAS matmuls.
        x = np.moveaxis(frames, -1, -3).astype(np.float32)
        x = self.rows @ x @ self.cols.T
        return np.moveaxis(np.clip(np.rint(x), 0, 255).astype(np.uint8), -3, -1)
