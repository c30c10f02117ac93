"""Pong's paddles, read exactly off a frame for the world model: which row each one's centre
is on, as an embedding added to the frame's.

The frame CNN sees the paddles through an 8x8 map, which places them to about a pixel
(a linear probe of the shipped model's frame embedding: 0.7 px mean, 1.5 px at the 90th
percentile), and a return's angle depends on where on the paddle the ball lands: the dream's
ball came off the paddle flat, or passed through it, where the real one bounced
(experiments/RESULTS.md). The ball's tokens are exact rows; with these the paddles' are too.
"""

import torch
from torch import nn

from worldmodel.envs.pong_detector import PADDLE_MASS_FRACTION, paddle_colour_weights
from worldmodel.envs.pong_screen import BACKGROUND, MIN_PADDLE_ROWS, geometry

SIDES = ("player", "opponent")
STEPS_PER_PIXEL = 4  # a full-frame row is 0.3 of a row at 64x64: quarter rows tell them apart


class PaddleRows(nn.Module):
    """Float frames (N, 3, H, W) in [0, 1] -> each paddle's centre row (N, 2) in quarter
    rows (`rows`), or "none" where it is hidden; and their embedding (N, D) (`forward`)."""

    def __init__(self, resolution: int, d_model: int) -> None:
        super().__init__()
        geo = geometry(resolution, resolution)
        self.cols = [slice(geo.paddle_cols[s][0], geo.paddle_cols[s][-1] + 1) for s in SIDES]
        weights = torch.stack([torch.from_numpy(paddle_colour_weights(s)) for s in SIDES])
        self.register_buffer("weights", weights * 255, persistent=False)  # (2, 3, 2)
        self.register_buffer("background", torch.from_numpy(BACKGROUND / 255), persistent=False)
        self.register_buffer("ball_rows", torch.from_numpy(geo.ball_rows), persistent=False)
        self.visible = PADDLE_MASS_FRACTION * MIN_PADDLE_ROWS * geo.paddle_row_mass
        self.none = resolution * STEPS_PER_PIXEL
        self.embed = nn.Embedding(2 * (self.none + 1), d_model)
        nn.init.normal_(self.embed.weight, std=0.02)

    @torch.no_grad()
    def rows(self, frames: torch.Tensor) -> torch.Tensor:
        found = []
        rows = torch.arange(frames.shape[-2], device=frames.device, dtype=frames.dtype)
        for side, cols in enumerate(self.cols):
            delta = frames[..., cols].movedim(1, -1) - self.background  # (N, H, C, 3)
            share = (delta @ self.weights[side]).amin(-1).clamp(min=0)  # (N, H, C)
            profile = share.sum(-1) * self.ball_rows  # (N, H): paddle per row, walls out
            mass = profile.sum(-1)
            centre = (profile * rows).sum(-1) / mass.clamp(min=1e-6)
            step = (centre * STEPS_PER_PIXEL).round().long().clamp(0, self.none - 1)
            found.append(torch.where(mass >= self.visible, step, self.none))
        return torch.stack(found, -1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        ids = self.rows(frames) + torch.tensor([0, self.none + 1], device=frames.device)
        return self.embed(ids).sum(-2)
