"""The ball's motion for a world model over the tokenizer's ball slot: each ball token read
and predicted also as its step from the frame before's.

Why: the slot's ball is two absolute tokens (column, row; ball_slot.py), and a GPT that
learns each of their 161 and 211 ids as an unrelated word has to learn the sum
"column + velocity" anew at every column. Between bounces Pong's ball keeps its velocity
(84% of consecutive tracker steps take the step before's step again), so with the step as
an input (an embedding of the displacement, added to the token's) and as an output (a
logit per displacement, added to the absolute logits of the columns it lands on) a flight
is a copy, and the model's capacity goes to the bounces.

Every ball token has a *reference*, the same coordinate in the frame before, from which its
motion class follows: the displacement (within +-MAX_STEP full-frame pixels), farther, gone
(no ball now), absent (none then and now) or appearing (a ball where there was none). A
token with no reference (a code, or a frame whose frame before is unknown) has the null
class: no embedding, no added logit. One table (reference, token id) -> class serves both.
"""

import torch
from torch import nn

from worldmodel.models.ball_slot import COLUMNS, ROWS

MAX_STEP = 12  # full-frame pixels; the ball steps at most 9 rows and 8 columns (frameskip 4)
FAR, GONE, ABSENT, APPEARS = range(2 * MAX_STEP + 1, 2 * MAX_STEP + 5)
CLASSES = APPEARS + 1  # a coordinate's motion classes
NULL_CLASS = 2 * CLASSES  # after the column's classes and the row's
# References: each coordinate's positions and "no ball" (column's first, row's after them),
# then the null reference.
REFERENCE_BASES = (0, COLUMNS + 1)
NULL_REFERENCE = COLUMNS + 1 + ROWS + 1


def _motion_table(first_ids: tuple[int, int], vocab_size: int) -> torch.Tensor:
    """(references, vocab_size) motion class of each token id given each reference; ids
    that are not the reference's coordinate (codes, the other coordinate) are null."""
    table = torch.full((NULL_REFERENCE + 1, vocab_size), NULL_CLASS, dtype=torch.long)
    for offset, (first, positions, ref_base) in enumerate(
        zip(first_ids, (COLUMNS, ROWS), REFERENCE_BASES, strict=True)
    ):
        was = torch.arange(positions + 1)[:, None]  # the reference's position; `positions`: none
        now = torch.arange(positions + 1)[None]  # the token's
        step = now - was
        motion = torch.where(step.abs() <= MAX_STEP, step + MAX_STEP, FAR)
        motion = torch.where(now == positions, GONE, motion)
        motion = torch.where(
            was == positions, torch.where(now == positions, ABSENT, APPEARS), motion
        )
        rows = slice(ref_base, ref_base + positions + 1)
        table[rows, first : first + positions + 1] = motion + offset * CLASSES
    return table


class BallMotion(nn.Module):
    """Motion embeddings and logits for a world model's ball tokens. Token positions within
    a frame: 0 the ball's column, 1 its row (the tokenizer's slot order), then the codes."""

    def __init__(self, first_ids: tuple[int, int], vocab_size: int, d_model: int) -> None:
        super().__init__()
        self.first_ids = first_ids
        self.register_buffer("table", _motion_table(first_ids, vocab_size), persistent=False)
        self.embed = nn.Embedding(NULL_CLASS + 1, d_model, padding_idx=NULL_CLASS)
        self.head = nn.Sequential(
            nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, NULL_CLASS)
        )
        nn.init.normal_(self.embed.weight, std=0.02)  # on the token embeddings' scale
        with torch.no_grad():
            self.embed.weight[NULL_CLASS].zero_()  # normal_ overwrote padding_idx's zeros

    def references(self, previous: torch.Tensor) -> torch.Tensor:
        """The tokens (..., K) of the frames before -> each next token's reference (..., K):
        the column's is the column before, the row's the row before, the codes' null; null
        too where the tokens before are no ball tokens (padding, or unknown: zeros)."""
        # Contiguous whatever `previous` is (the engine passes a view into its growing token
        # history): strides that change every step would make torch.compile recompile.
        refs = torch.full(previous.shape, NULL_REFERENCE, dtype=torch.long, device=previous.device)
        for j, (first, positions, ref_base) in enumerate(
            zip(self.first_ids, (COLUMNS, ROWS), REFERENCE_BASES, strict=True)
        ):
            position = previous[..., j] - first
            known = (position >= 0) & (position <= positions)
            refs[..., j] = torch.where(known, position + ref_base, NULL_REFERENCE)
        return refs

    def input_embedding(self, tokens: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
        """Tokens and their references (same shape) -> the motion embedding (..., D)."""
        return self.embed(self.table[refs, tokens])

    def logits(self, hidden: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
        """Hidden states (..., D) that predict tokens with references (...) -> the logits
        (..., vocab_size) their motion adds: a displacement's to the id it lands on."""
        motion = self.head(hidden)
        motion = torch.cat([motion, motion.new_zeros(*motion.shape[:-1], 1)], -1)  # null: 0
        return motion.gather(-1, self.table[refs])
