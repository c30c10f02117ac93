"""Pong's score as a context-aware token: who scored since the frame before (nobody, the
opponent or the player), and the score rows drawn from the frame before and the digit font
rather than by the decoder.

Why: drawn by the decoder, the digits are one more thing the codes carry, and a sampled code
redraws them: the shipped ball-slot dream changed its score 161 times in 1,000 steps, the
real game 8 (experiments/RESULTS.md). As a token the score is read off the frame before and
can only go up by one, on the step the world model says someone scored.

The rows above the top wall hold nothing but the two scores (and the HMOVE bar, which never
changes), so a frame's score rows are the frame before's plus the ink of the digits that
changed: `previous + ink * (cover[new] - cover[old])`, exactly, with `cover` each score's
digits as the area resize shrinks them. A score is read by matching the rows' ink of each
side's colour to those covers. Only an episode's first frame cannot be read (another
palette); the frame after it shows 0:0, drawn whole.
"""

import numpy as np
import torch
from torch import nn

from worldmodel.envs.pong_screen import (
    BACKGROUND,
    FULL_H,
    FULL_W,
    MAX_SCORE,
    OPPONENT_COLOUR,
    PLAYER_COLOUR,
    SCORE_ROWS,
    geometry,
    score_ink,
    score_rows,
)
from worldmodel.envs.resize import area_weights

NOBODY, OPPONENT, PLAYER = 0, 1, 2  # score change ids: who scored since the frame before
CHANGES = 3

SIDES = ("opponent", "player")  # the order of a score pair
# A side's score reads as the value whose digits' cover is nearest to its ink, if no pixel is
# further off than this (rounding to uint8 moves at most ~0.01; the covers of two scores
# differ by at least a whole pixel's share somewhere).
READ_TOLERANCE = 0.2


def player_reward(changes: torch.Tensor) -> torch.Tensor:
    """Change ids -> the player's reward: +1 when the player scored, -1 the opponent."""
    return (changes == PLAYER).float() - (changes == OPPONENT).float()


class ScoreSlot(nn.Module):
    """Reads and draws the score rows of (B, 3, H, W) frames in [0, 1]. Scores are (B, 2)
    long (opponent, player), -1 where they cannot be read."""

    def __init__(self, resolution: int) -> None:
        super().__init__()
        self.rows = geometry(resolution, resolution).score_rows
        row_weights = area_weights(FULL_H, resolution)[: self.rows, : SCORE_ROWS[1]]
        col_weights = area_weights(FULL_W, resolution)

        def shrink(full: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(row_weights @ full @ col_weights.T).float()

        cover = torch.stack(
            [torch.stack([shrink(score_ink(s, n)) for n in range(MAX_SCORE + 1)]) for s in SIDES]
        )  # (2, scores, h, W)
        first = torch.stack([shrink(score_rows(0, 0)[..., c]) for c in range(3)]) / 255
        ink = torch.from_numpy((np.stack([OPPONENT_COLOUR, PLAYER_COLOUR]) - BACKGROUND) / 255)
        buffers = {
            "cover": cover,
            "digit_columns": (cover > 0).any(1).any(1)[:, None],  # (2, 1, W) each side's own
            "ink": ink.float()[:, :, None, None],  # (2, 3, 1, 1)
            "background": torch.from_numpy(BACKGROUND / 255).float().view(3, 1, 1),
            "opening_rows": first,  # (3, h, W): 0:0, the frame after an episode's first
            "sides": torch.arange(len(SIDES)),
        }
        for name, value in buffers.items():
            self.register_buffer(name, value, persistent=False)

    def read(self, frames: torch.Tensor) -> torch.Tensor:
        """The scores shown in frames (B, 3, H, W) -> (B, 2)."""
        top = (frames[:, :, : self.rows] - self.background)[:, None]  # (B, 1, 3, h, W)
        # Each pixel's ink of each side's colour, as a share of a whole digit pixel (sums,
        # not einsum: under autocast a bf16 product would be off by more than uint8 rounding).
        amount = (top * self.ink).sum(2) / self.ink.pow(2).sum(1)  # (B, 2, h, W)
        amount = amount * self.digit_columns
        off = (amount[:, :, None] - self.cover[None]).abs().amax((3, 4))  # (B, 2, scores)
        distance, scores = off.min(2)
        return torch.where(distance <= READ_TOLERANCE, scores, -1)

    def change(self, previous: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Who scored between `previous` and `frames` (B, 3, H, W) -> (B,) change ids; NOBODY
        also where a score cannot be read or moved otherwise than by one point."""
        before, after = self.read(previous), self.read(frames)
        gained = torch.where(((before >= 0) & (after >= 0)).all(1, keepdim=True), after - before, 0)
        opponent = (gained[:, 0] == 1) & (gained[:, 1] == 0)
        player = (gained[:, 0] == 0) & (gained[:, 1] == 1)
        return torch.where(opponent, OPPONENT, torch.where(player, PLAYER, NOBODY))

    def draw(
        self, previous: torch.Tensor, frames: torch.Tensor, changes: torch.Tensor
    ) -> torch.Tensor:
        """Frames (B, 3, H, W) with their score rows those of `previous` plus the point of
        `changes` (B,) (a score stays at MAX_SCORE); 0:0 after a frame that cannot be read
        (an episode's first)."""
        old = self.read(previous)
        readable = (old >= 0).all(1)
        old = old.clamp(min=0)
        scored = torch.stack([changes == OPPONENT, changes == PLAYER], 1)
        new = (old + scored.long()).clamp(max=MAX_SCORE)
        gained = self.cover[self.sides, new] - self.cover[self.sides, old]  # (B, 2, h, W)
        top = previous[:, :, : self.rows] + (gained[:, :, None] * self.ink).sum(1)
        top = torch.where(readable[:, None, None, None], top, self.opening_rows)
        return torch.cat([top, frames[:, :, self.rows :]], 2)
