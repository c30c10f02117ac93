"""Vector quantizer with a straight-through gradient and a remedy for codebook collapse.

Collapse (a few codes used, the rest never updated) is the known VQ failure. Two remedies,
both switchable so their effect can be measured: cosine codes (encoder outputs and codes
l2-normalised, so no code can sit far away from all encoder outputs) and dead-code
revival (codes unused for a while are moved onto random encoder outputs of the batch).

With `books > 1` every token position has a codebook of its own (token ids still run over
`num_codes`; what an id draws depends on where it is). A shared codebook must serve every
kind of patch at once; in Pong a patch holding a paddle and the ball needs a code per
(paddle height, ball place) pair, and those rare pairs lose to the common patches.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class QuantizerOutput:
    z_q: torch.Tensor  # (B, D, h, w) quantized, carrying the straight-through gradient
    tokens: torch.Tensor  # (B, h*w) code indices
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor


class VectorQuantizer(nn.Module):
    def __init__(
        self,
        num_codes: int = 512,
        dim: int = 512,
        cosine: bool = True,
        revive_dead_codes: bool = True,
        dead_after_steps: int = 200,
        books: int = 1,
    ) -> None:
        super().__init__()
        self.num_codes, self.dim, self.cosine, self.books = num_codes, dim, cosine, books
        self.revive_dead_codes = revive_dead_codes
        # A book sees 1/books of the encoder outputs: it waits `books` times as many steps
        # before calling a code dead, or the codes for rare patches would be churned away.
        self.dead_after = dead_after_steps * books
        # All books in one table, book after book: code c of book k is row k * num_codes + c.
        self.codebook = nn.Embedding(books * num_codes, dim)
        nn.init.uniform_(self.codebook.weight, -1.0 / num_codes, 1.0 / num_codes)
        # Training steps since each code was last chosen (for revival and usage stats).
        self.register_buffer("idle_steps", torch.zeros(books * num_codes, dtype=torch.long))

    @property
    def total_codes(self) -> int:
        return self.books * self.num_codes

    def book_of_position(self, positions: int) -> torch.Tensor:
        """(positions,) the book each token position of a frame quantizes with."""
        if self.books not in (1, positions):
            raise ValueError(f"{self.books} codebooks for {positions} token positions")
        device = self.codebook.weight.device
        return torch.arange(positions, device=device) % self.books

    def code_ids(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, K) tokens -> (B, K) rows of the codebook table (= tokens with one book)."""
        return tokens + self.book_of_position(tokens.shape[-1]) * self.num_codes

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) vectors as the nearest-code search compares them."""
        return F.normalize(x, dim=-1) if self.cosine else x

    def codes(self) -> torch.Tensor:
        """(total_codes, D) every book's codes, as the distances see them."""
        return self.prepare(self.codebook.weight)

    def lookup(self, tokens: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        """(B, h*w) indices -> (B, D, h, w) code vectors."""
        z_q = self.codes()[self.code_ids(tokens)]
        return z_q.reshape(tokens.shape[0], *shape, self.dim).permute(0, 3, 1, 2)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        b, d, h, w = z.shape
        flat = self.prepare(z.permute(0, 2, 3, 1).reshape(b, h * w, d))
        self.book_of_position(h * w)  # checks that there is one book, or one per position
        all_codes = self.codes()
        with torch.no_grad():  # the choice carries no gradient: keep it out of the graph
            # (h*w, num_codes, D): the codes each position chooses from (a view of one book).
            codes = all_codes.reshape(self.books, self.num_codes, d).expand(h * w, -1, -1)
            distances = (
                flat.pow(2).sum(-1, keepdim=True)
                - 2 * torch.einsum("bkd,knd->bkn", flat, codes)
                + codes.pow(2).sum(-1)[None]
            )
            tokens = distances.argmin(dim=-1)  # (B, h*w)
        ids = self.code_ids(tokens)
        z_q_flat = all_codes[ids]

        if self.training:
            errors = (flat.detach() - z_q_flat.detach()).pow(2).sum(-1)
            self._track_usage(ids, flat.detach(), errors)
        codebook_loss = F.mse_loss(z_q_flat, flat.detach())
        commitment_loss = F.mse_loss(flat, z_q_flat.detach())
        # Straight-through: the forward pass uses z_q, the gradient flows to z unchanged.
        z_q_flat = flat + (z_q_flat - flat).detach()
        z_q = z_q_flat.reshape(b, h, w, d).permute(0, 3, 1, 2)
        return QuantizerOutput(z_q, tokens, codebook_loss, commitment_loss)

    @torch.no_grad()
    def _track_usage(self, ids: torch.Tensor, flat: torch.Tensor, errors: torch.Tensor) -> None:
        """ids, errors (B, K) and flat (B, K, D): the rows chosen and how far off they were."""
        used = torch.zeros_like(self.idle_steps, dtype=torch.bool)
        used[ids] = True
        self.idle_steps = torch.where(used, 0, self.idle_steps + 1)
        self._latest_inputs, self._latest_errors = flat, errors

    @torch.no_grad()
    def revive_dead_codes_(self) -> int:
        """Move codes idle for `dead_after` steps onto recent encoder outputs, drawn with
        probability proportional to how badly they are quantized now (k-means++ style).

        Uniform draws would mostly pick background cells, which already have a good code;
        the cells holding the ball or a paddle are the rare, badly served ones. Called after
        the optimizer step (changing the codebook inside forward would corrupt the pending
        backward pass). Returns how many codes were revived.
        """
        inputs = getattr(self, "_latest_inputs", None)
        if not self.revive_dead_codes or inputs is None:
            return 0
        dead = (self.idle_steps > self.dead_after).nonzero().squeeze(1)
        # A book's dead codes go onto the encoder outputs at that book's positions, one code
        # per output: copies of one output could not all be chosen (the nearest-code search
        # picks the first of equals), so the rest of the dead codes wait for the next batch.
        input_book = self.book_of_position(inputs.shape[1])
        revived = 0
        for book in (dead // self.num_codes).unique():
            book_inputs = inputs[:, input_book == book].reshape(-1, self.dim)
            book_weights = self._latest_errors[:, input_book == book].reshape(-1) + 1e-12
            codes = dead[dead // self.num_codes == book][: len(book_inputs)]
            picks = torch.multinomial(book_weights, len(codes))
            self.codebook.weight[codes] = book_inputs[picks]
            self.idle_steps[codes] = 0
            revived += len(codes)
        return revived


def codebook_stats(tokens: torch.Tensor, num_codes: int) -> dict[str, torch.Tensor]:
    """Fraction of codes used in `tokens` and the perplexity of their distribution."""
    return count_stats(torch.bincount(tokens.flatten(), minlength=num_codes))


def count_stats(counts: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same from per-code counts."""
    probs = counts.float() / counts.sum().clamp_min(1)
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum()
    return {"usage": (counts > 0).float().mean(), "perplexity": entropy.exp()}
