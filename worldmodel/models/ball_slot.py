"""Pong's ball as an object slot: two tokens (its left column and top row on the full
210x160 screen) in place of pixels, and the ball drawn from them as the emulator draws it
and the area resize shrinks it.

Why: given the frames before, context-aware codes still say where the ball *is*, spread
over several of 1,024 unordered codes (experiments/RESULTS.md), so a world model has to place
every step of a flight anew. As two coordinates a flight is a line the world model can read
off the last two steps, and a drawn ball is never lost, blurred or doubled.

The emulator draws the ball as a 2x4 white box at whole full-frame pixels; the area resize
turns it into a `cover` map (the share of each small pixel the box fills), and as the ball
only ever hides background, a frame is `frame_without_ball + cover * (WHITE - BACKGROUND)`:
exactly, also in the pixels it shares with a wall edge or a paddle beside it. The position
is read back from a frame by the Pong detector's sub-pixel centre, matched to the box
position whose resized image has that centre (on tracker play the column is always the
RAM's, the row the RAM's or one above, the RAM's own offset; measured in the tests).
"""

import numpy as np
import torch
from torch import nn

from worldmodel.envs.pong_detector import detect
from worldmodel.envs.pong_screen import (
    BACKGROUND,
    BALL_H,
    BALL_W,
    FULL_H,
    FULL_W,
    PLAYFIELD_ROWS,
    WHITE,
)
from worldmodel.envs.resize import area_weights
from worldmodel.frames import to_uint8_frames

COLUMNS, ROWS = FULL_W, FULL_H  # ball positions; index COLUMNS / ROWS means "no ball"


def _box_cover(weights: np.ndarray, size: int, visible: np.ndarray) -> np.ndarray:
    """(positions + 1, n): the resized share of each pixel a box of `size` full-frame pixels
    starting at each position covers where `visible`; the last row (no ball) covers nothing."""
    n_full = weights.shape[1]
    cover = np.zeros((n_full + 1, weights.shape[0]), np.float32)
    for start in range(n_full):
        span = np.zeros(n_full, np.float32)
        span[start : start + size] = 1
        cover[start] = weights @ (span * visible)
    return cover


def _centres(cover: np.ndarray) -> np.ndarray:
    """The cover-weighted centre (pixel centres at integers) of each position's box; nan
    where nothing of it is visible."""
    mass = cover.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (cover * np.arange(cover.shape[1])).sum(1) / mass


class BallSlot(nn.Module):
    """Locates, erases and draws the ball in (B, 3, H, W) frames in [0, 1]. Ball positions
    are (B, 2) long: (left column, top row) on the full screen, (COLUMNS, ROWS) for none."""

    def __init__(self, resolution: int) -> None:
        super().__init__()
        playfield = np.zeros(FULL_H, np.float32)
        playfield[slice(*PLAYFIELD_ROWS)] = 1  # the walls hide the ball
        rows = _box_cover(area_weights(FULL_H, resolution), BALL_H, playfield)
        cols = _box_cover(area_weights(FULL_W, resolution), BALL_W, np.ones(FULL_W, np.float32))
        self.register_buffer("row_cover", torch.from_numpy(rows), persistent=False)
        self.register_buffer("col_cover", torch.from_numpy(cols), persistent=False)
        self.row_centres, self.col_centres = _centres(rows[:-1]), _centres(cols[:-1])
        ink = torch.from_numpy((WHITE - BACKGROUND) / 255).view(1, 3, 1, 1)
        self.register_buffer("ink", ink, persistent=False)
        self.register_buffer("none", torch.tensor([COLUMNS, ROWS]), persistent=False)

    @torch.no_grad()
    def locate(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) or float (B, 3, H, W) frames -> ball positions (B, 2)."""
        frames = frames if frames.dtype == torch.uint8 else to_uint8_frames(frames)
        objects = detect(frames.cpu().numpy())
        ball = np.tile(np.array([COLUMNS, ROWS]), (len(frames), 1))
        x, y = objects.ball_xy[objects.ball_present].T
        # The box whose resized image has the detected centre (unseen tops are never chosen).
        ball[objects.ball_present, 0] = np.abs(self.col_centres[None] - x[:, None]).argmin(1)
        ball[objects.ball_present, 1] = np.nanargmin(np.abs(self.row_centres[None] - y[:, None]), 1)
        return torch.from_numpy(ball).to(frames.device)

    def cover(self, ball: torch.Tensor) -> torch.Tensor:
        """Ball positions (B, 2) -> (B, 1, H, W) the share of each pixel the ball covers."""
        return (self.row_cover[ball[:, 1]][:, :, None] * self.col_cover[ball[:, 0]][:, None])[
            :, None
        ]

    def draw(self, frames: torch.Tensor, cover: torch.Tensor) -> torch.Tensor:
        """The ball drawn over frames (B, 3, H, W)."""
        return frames + self.ink * cover

    def erase(self, frames: torch.Tensor, cover: torch.Tensor) -> torch.Tensor:
        """The frames as they would be without the ball (the inverse of draw)."""
        return (frames - self.ink * cover).clamp(0, 1)
