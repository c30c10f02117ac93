"""Trains the context-aware tokenizer on (previous frame, action, frame) pairs cut from the
data's segments: 0.1 L1 + L2 + the worst pixel's squared error + squared error on the
pixels that change + codebook + commitment (Delta-IRIS's loss, with more weight on what
moves), LPIPS optional.

The first trap (measured, experiments/RESULTS.md): shown the frame just before, the
decoder draws it again plus what the action does, the tokens carry nothing, and the
codebook collapses to a few codes. The *context gap* avoids it: half of the pairs show a
previous frame up to `context_gap` steps back, where the paddles and ball have moved far,
so the decoder cannot draw the frame without the tokens; the dream only ever asks for gap 1.

The second: the dream draws each frame from its own drawing of the one before, so errors
pile up (a ball left behind stays). With `own_drawing_probability` a pair's previous frame
is the tokenizer's own drawing, chained over 1..`own_drawing_steps` steps from a real frame
(no gradient through the chain): it learns to draw from what it drew.
"""

from dataclasses import dataclass

import lightning as L
import numpy as np
import torch

from worldmodel.data.segments import Segments
from worldmodel.frames import to_float_frames, to_uint8_frames, windows
from worldmodel.lit.common import (
    FrozenPerceptualWeights,
    Throughput,
    log_image,
    losses_are_finite,
    psnr,
    revive_and_sync_codes,
    to_uint8_image,
    warmup_cosine,
)
from worldmodel.lit.tokenizer_module import QuantizerLossWeights
from worldmodel.models.delta_tokenizer import (
    DeltaTokenizer,
    DeltaTokenizerConfig,
    shuffled_token_ratio,
)
from worldmodel.models.perceptual import PerceptualLoss
from worldmodel.models.quantizer import codebook_stats


@dataclass
class DeltaTokenizerLoss(QuantizerLossWeights):
    l1_weight: float = 0.1
    l2_weight: float = 1.0
    # Squared error of each frame's worst pixel (Delta-IRIS: 0.01): a lost ball is the
    # worst pixel of its frame.
    worst_pixel_weight: float = 1.0
    # ... reached linearly over these first steps (from 0): at full weight from the start the
    # single worst pixels pull harder than the changed areas the tokens first learn to carry
    # (the probes' tokens came into use by ~1,250 steps at 0.01, the one-command run's only
    # by ~5,000 at 1.0).
    worst_pixel_ramp_steps: int = 0
    # Squared error on the pixels that differ from the previous frame, in the real frame
    # or in the drawing (what moved, and a ball left behind), as a mean over those pixels.
    changed_weight: float = 50.0
    changed_threshold: float = 0.02
    perceptual_weight: float = 0.0  # LPIPS: available, not measured to help here yet


@dataclass
class Pairs:
    """(context, action, frame) triples: uint8 frames (N, H, W, 3), each drawn given the
    frames before it, `previous` (N, c, H, W, 3) oldest first, and the action just before;
    `consecutive` (N,) where the last of those is the frame just before (the dream's case)."""

    previous: torch.Tensor
    actions: torch.Tensor
    frames: torch.Tensor
    consecutive: torch.Tensor


def cut_pairs(
    batch: Segments, gaps: torch.Tensor, starts: torch.Tensor | None = None, context: int = 1
) -> tuple[Pairs, torch.Tensor, torch.Tensor]:
    """From segments (frames (B, T, ...), actions (B, T), mask (B, T)), the pair that shows
    frame `start + gap` of each segment after the `context` frames up to its frame `start`
    (`context - 1` unless given; earlier ones repeat frame 0), with the action taken just
    before it. A start or gap past the segment's episode end shrinks to fit; segments with
    no second frame are left out. Returns the pairs and, per pair, its segment and start."""
    last = batch.mask.sum(1) - 1  # the last valid index of each segment
    starts = torch.full_like(gaps, context - 1) if starts is None else starts
    starts = torch.minimum(starts, (last - 1).clamp_min(0))
    gaps = torch.minimum(gaps, last - starts)
    keep = gaps >= 1
    rows, gaps, starts = torch.nonzero(keep).squeeze(1), gaps[keep], starts[keep]
    before = (starts[:, None] + torch.arange(1 - context, 1, device=starts.device)).clamp_min(0)
    pairs = Pairs(
        previous=batch.frames[rows[:, None], before],
        actions=batch.actions[rows, starts + gaps - 1],
        frames=batch.frames[rows, starts + gaps],
        consecutive=gaps == 1,
    )
    return pairs, rows, starts


@torch.no_grad()
def own_drawings(
    tokenizer: DeltaTokenizer, frames: torch.Tensor, actions: torch.Tensor, steps: torch.Tensor
) -> torch.Tensor:
    """Per segment (frames (N, T, ...), actions (N, T)), the context the tokenizer draws frame
    `c - 1 + steps` from (c = its context_frames) when every frame after the first c real
    ones is drawn from the c before it, its own drawings among them; the real first c where
    steps is 0. uint8 (N, c, H, W, 3), as the dream has its frames."""
    c = tokenizer.cfg.context_frames
    context = frames[:, :c].clone()
    for i in range(1, int(steps.max()) + 1 if len(steps) else 1):
        rows = torch.nonzero(steps >= i).squeeze(1)
        drawn = tokenizer.round_trip(
            context[rows], actions[rows, c + i - 2], frames[rows, c + i - 1]
        )
        context[rows] = torch.cat([context[rows, 1:], to_uint8_frames(drawn)[:, None]], 1)
    return context


def consecutive_pairs(batch: Segments, context: int = 1) -> Pairs:
    """Every (frames up to t, action t, frame t + 1) of the segments that lies inside an
    episode (frames before a segment's first repeat it)."""
    valid = batch.mask[:, 1:] & batch.mask[:, :-1]
    return Pairs(
        previous=windows(batch.frames, context)[:, :-1][valid],
        actions=batch.actions[:, :-1][valid],
        frames=batch.frames[:, 1:][valid],
        consecutive=torch.ones(int(valid.sum()), dtype=torch.bool, device=valid.device),
    )


class DeltaTokenizerModule(FrozenPerceptualWeights, L.LightningModule):
    """Reads segments of `context_gap + 1` frames (`sequence_length`)."""

    data_mode = "segments"

    def __init__(
        self,
        model: dict,
        loss: dict,
        context_gap: int = 8,
        gap_probability: float = 0.5,
        own_drawing_steps: int = 0,
        own_drawing_probability: float = 0.0,
        lr: float = 1e-3,
        lr_floor: float = 0.1,
        weight_decay: float = 0.0,
        image_log_every_n_steps: int = 500,
        nonfinite: str = "stop",
    ) -> None:
        super().__init__()
        if context_gap < 1:
            raise ValueError(f"context_gap must be at least 1, got {context_gap}")
        for name, value in [
            ("gap_probability", gap_probability),
            ("own_drawing_probability", own_drawing_probability),
        ]:
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if own_drawing_steps < 0:
            raise ValueError(f"own_drawing_steps must be >= 0, got {own_drawing_steps}")
        self.save_hyperparameters()
        self.tokenizer = DeltaTokenizer(DeltaTokenizerConfig(**model))
        self.loss_cfg = loss = DeltaTokenizerLoss(**loss)
        self.perceptual = (
            PerceptualLoss(loss.perceptual_net) if loss.perceptual_weight > 0 else None
        )
        self.context_gap, self.gap_probability = context_gap, gap_probability
        self.own_drawing_steps, self.own_drawing_probability = (
            own_drawing_steps,
            own_drawing_probability,
        )
        self.lr, self.lr_floor, self.weight_decay = lr, lr_floor, weight_decay
        self.image_log_every_n_steps = image_log_every_n_steps
        self.throughput = Throughput()

    @property
    def context_frames(self) -> int:
        return self.tokenizer.cfg.context_frames

    @property
    def sequence_length(self) -> int:
        return self.context_frames + self.own_drawing_steps + self.context_gap

    def draw_gaps(self, n: int) -> torch.Tensor:
        """Per pair: 1, or with `gap_probability` a gap drawn from 1..context_gap."""
        wide = torch.randint(1, self.context_gap + 1, (n,), device=self.device)
        far = torch.rand(n, device=self.device) < self.gap_probability
        return torch.where(far, wide, torch.ones_like(wide))

    def draw_own_steps(self, n: int) -> torch.Tensor:
        """Per pair: 0 (a real previous frame), or with `own_drawing_probability` a chain of
        1..own_drawing_steps own drawings."""
        if self.own_drawing_steps == 0:
            return torch.zeros(n, dtype=torch.long, device=self.device)
        chained = torch.randint(1, self.own_drawing_steps + 1, (n,), device=self.device)
        own = torch.rand(n, device=self.device) < self.own_drawing_probability
        return torch.where(own, chained, torch.zeros_like(chained))

    def training_pairs(self, batch: Segments) -> Pairs:
        n, c = len(batch), self.context_frames
        own = self.draw_own_steps(n)
        pairs, rows, starts = cut_pairs(batch, self.draw_gaps(n), own + c - 1, c)
        if (starts > c - 1).any():
            pairs.previous = own_drawings(
                self.tokenizer, batch.frames[rows], batch.actions[rows], starts - (c - 1)
            )
        return pairs

    def worst_pixel_weight(self) -> float:
        ramp = self.loss_cfg.worst_pixel_ramp_steps
        progress = 1.0 if ramp <= 0 else min(1.0, self.global_step / ramp)
        return self.loss_cfg.worst_pixel_weight * progress

    def drawing_terms(
        self, drawn: torch.Tensor, target: torch.Tensor, last: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The pixel terms of drawings of `target` from context ending with `last` (float)."""
        cfg, error = self.loss_cfg, drawn - target

        def differs(x: torch.Tensor) -> torch.Tensor:
            return (x - last).abs().amax(1, keepdim=True) > cfg.changed_threshold

        changed = differs(target) | differs(drawn.detach())
        squared = error.pow(2)
        return {
            "l1": cfg.l1_weight * error.abs().mean(),
            "l2": cfg.l2_weight * squared.mean(),
            "worst_pixel": self.worst_pixel_weight() * squared.flatten(1).max(1).values.mean(),
            "changed": cfg.changed_weight
            * (squared * changed).sum()
            / (3 * changed.sum()).clamp_min(1),
        }

    def losses(self, pairs: Pairs) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        out = self.tokenizer(pairs.previous, pairs.actions, pairs.frames)
        recon, cfg = out.reconstruction, self.loss_cfg
        target, last = to_float_frames(pairs.frames), to_float_frames(pairs.previous[:, -1])
        terms = {
            **self.drawing_terms(recon, target, last),
            "codebook": cfg.codebook_weight * out.quantized.codebook_loss,
            "commitment": cfg.commitment_weight * out.quantized.commitment_loss,
        }
        if self.perceptual is not None:
            terms["perceptual"] = cfg.perceptual_weight * self.perceptual(recon.clamp(0, 1), target)
        if self.tokenizer.cfg.as_predicted and pairs.consecutive.any():
            # Only the frame just before can predict the frame: the dream's case.
            c = pairs.consecutive
            predicted = self.tokenizer.draw_as_predicted(pairs.previous[c], pairs.actions[c])
            drawn = self.drawing_terms(predicted, target[c], last[c])
            terms |= {f"predicted_{k}": v for k, v in drawn.items()}
        return terms, recon, out.quantized.tokens

    def training_step(self, batch: Segments, batch_idx: int) -> torch.Tensor | None:
        pairs = self.training_pairs(batch)
        terms, recon, tokens = self.losses(pairs)
        if not losses_are_finite(self, terms):
            return None  # Lightning skips the optimizer step
        loss = sum(terms.values())
        stats = codebook_stats(tokens, self.tokenizer.cfg.num_codes)
        if (frames_per_s := self.throughput(len(tokens))) is not None:
            self.log("train/frames_per_s", frames_per_s)
        self.log_dict({f"train/{k}": v for k, v in terms.items()})
        self.log_dict({"train/loss": loss, "train/codebook_usage": stats["usage"]}, prog_bar=True)
        self.log("train/perplexity", stats["perplexity"])
        if self.global_step % self.image_log_every_n_steps == 0:
            self._log_grid("train/reconstructions", pairs, recon)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.log(
            "train/revived_codes", float(revive_and_sync_codes(self, self.tokenizer.quantizer))
        )

    def on_validation_epoch_start(self) -> None:
        self._val_tokens: list[torch.Tensor] = []

    def validation_step(self, batch: Segments, batch_idx: int) -> None:
        # What the dream asks for: the frames just before.
        pairs = consecutive_pairs(batch, self.context_frames)
        terms, recon, tokens = self.losses(pairs)
        self._val_tokens.append(tokens.flatten())
        if self.tokenizer.cfg.as_predicted:
            coded = self.tokenizer.encode(pairs.previous, pairs.actions, pairs.frames)
            predicted = (coded[:, 0] == self.tokenizer.cfg.num_codes).float().mean()
            self.log("val/as_predicted_share", predicted)
        self.log_dict({f"val/{k}": v for k, v in terms.items()})
        self.log_dict(
            {
                "val/loss": sum(terms.values()),
                "val/psnr": psnr(recon, to_float_frames(pairs.frames)),
            },
            prog_bar=True,
        )
        # If swapping tokens between frames does not hurt, the decoder ignores them.
        ratio = shuffled_token_ratio(self.tokenizer, pairs.previous, pairs.actions, pairs.frames)
        self.log("val/shuffled_token_ratio", ratio)
        if batch_idx == 0:
            self._log_grid("val/reconstructions", pairs, recon)

    def on_validation_epoch_end(self) -> None:
        stats = codebook_stats(torch.cat(self._val_tokens), self.tokenizer.cfg.num_codes)
        self.log_dict({"val/codebook_usage": stats["usage"], "val/perplexity": stats["perplexity"]})

    def _log_grid(self, key: str, pairs: Pairs, recon: torch.Tensor, n: int = 8) -> None:
        """Rows: the frame before, frame, drawing, |drawing - frame|."""
        previous = to_float_frames(pairs.previous[:n, -1])
        target = to_float_frames(pairs.frames[:n])
        recon = recon[:n].clamp(0, 1)
        rows = [to_uint8_image(x) for x in (previous, target, recon, (recon - target).abs())]
        log_image(self.loggers, key, np.concatenate(rows, axis=0), self.global_step)

    def configure_optimizers(self) -> dict:
        """AdamW, the learning rate falling along a cosine to `lr_floor` x at max_steps (the
        probes drew the ball better at a third of the rate, once the tokens were in use)."""
        optimizer = torch.optim.AdamW(
            self.tokenizer.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        schedule = warmup_cosine(optimizer, self.trainer.max_steps, self.lr_floor)
        return {"optimizer": optimizer, "lr_scheduler": schedule}
