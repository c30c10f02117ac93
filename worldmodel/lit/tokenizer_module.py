"""Trains the VQ-VAE tokenizer: L1 (foreground-weighted) + codebook + commitment + LPIPS."""

from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from worldmodel.frames import to_float_frames
from worldmodel.lit.common import (
    FrozenPerceptualWeights,
    Throughput,
    log_image,
    losses_are_finite,
    psnr,
    revive_and_sync_codes,
    to_uint8_image,
)
from worldmodel.models.perceptual import PerceptualLoss
from worldmodel.models.quantizer import codebook_stats, count_stats
from worldmodel.models.tokenizer import Tokenizer, TokenizerConfig


@dataclass
class QuantizerLossWeights:
    """The terms every tokenizer's loss has besides its pixel terms."""

    codebook_weight: float = 1.0
    commitment_weight: float = 0.25
    perceptual_weight: float = 1.0  # LPIPS
    perceptual_net: str = "alex"


@dataclass
class TokenizerLoss(QuantizerLossWeights):
    l1_weight: float = 1.0
    # Pixels that differ from the background (ball, paddles, score) count 1 + this much:
    # the ball is a faint 1-2 pixel smudge at 64x64 and plain L1 barely notices losing it.
    foreground_weight: float = 10.0
    foreground_threshold: float = 0.02
    # Pixels that differ from the batch's static scene (its per-pixel median frame), in the
    # real frame or in the reconstruction, count 1 + this much more: that is what moves (ball,
    # paddles), a few dozen pixels that the walls and score otherwise outweigh in the
    # foreground term. Marking the reconstruction's deviations too penalises phantom balls.
    moving_weight: float = 0.0
    # Squared error on those moving pixels. L1's optimum is the median: for a ball whose
    # exact place the code leaves uncertain by a pixel or two, the median is no ball at all.
    # The squared error's optimum is the mean: a dimmer ball where the code says it is.
    moving_l2_weight: float = 0.0


def deviates(frames: torch.Tensor, reference: torch.Tensor, threshold: float) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) bool: pixels whose colour is away from `reference`."""
    return (frames - reference).abs().amax(dim=1, keepdim=True) > threshold


def foreground_mask(frames: torch.Tensor, threshold: float) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) bool: pixels away from the frame's background colour.

    The background is the per-channel median, which is the dominant colour in games whose
    playfield is mostly one colour (Pong's brown).
    """
    return deviates(frames, frames.flatten(2).median(dim=2).values[..., None, None], threshold)


def moving_mask(target: torch.Tensor, recon: torch.Tensor, threshold: float) -> torch.Tensor:
    """(B, 3, H, W) x 2 -> (B, 1, H, W) bool: pixels where the real frame or its reconstruction
    leaves the batch's static scene (the per-pixel median of the real frames). A batch of one
    frame is its own static scene: only the reconstruction's deviations are marked."""
    static = target.median(dim=0, keepdim=True).values
    return deviates(target, static, threshold) | deviates(recon.detach(), static, threshold)


class TokenizerModule(FrozenPerceptualWeights, L.LightningModule):
    """`model` and `loss` are plain dicts (TokenizerConfig / TokenizerLoss fields), so the
    checkpoint's hyper-parameters load with `torch.load(weights_only=True)`."""

    data_mode, sequence_length = "frames", 1  # it trains on single frames

    def __init__(
        self,
        model: dict,
        loss: dict,
        lr: float = 3e-4,
        weight_decay: float = 0.0,
        image_log_every_n_steps: int = 500,
        nonfinite: str = "stop",
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.tokenizer = Tokenizer(TokenizerConfig(**model))
        if compile:  # in place: the state-dict keys (and so checkpoints) stay the same
            self.tokenizer.compile()
        self.loss_cfg = loss = TokenizerLoss(**loss)
        self.perceptual = (
            PerceptualLoss(loss.perceptual_net) if loss.perceptual_weight > 0 else None
        )
        self.lr, self.weight_decay = lr, weight_decay
        self.image_log_every_n_steps = image_log_every_n_steps
        self._val_token_counts: torch.Tensor | None = None
        self.throughput = Throughput()

    def losses(
        self, frames: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        target = to_float_frames(frames)
        out = self.tokenizer(target)
        recon = out.reconstruction
        cfg = self.loss_cfg
        weights = 1.0 + cfg.foreground_weight * foreground_mask(target, cfg.foreground_threshold)
        moving = moving_mask(target, recon, cfg.foreground_threshold)
        weights = weights + cfg.moving_weight * moving
        error = recon - target
        terms = {
            "l1": cfg.l1_weight * (error.abs() * weights).mean() / weights.mean(),
            "codebook": cfg.codebook_weight * out.quantized.codebook_loss,
            "commitment": cfg.commitment_weight * out.quantized.commitment_loss,
        }
        if cfg.moving_l2_weight > 0:
            squared = error.pow(2).sum(1, keepdim=True) * moving
            terms["moving_l2"] = cfg.moving_l2_weight * squared.sum() / moving.sum().clamp_min(1)
        if self.perceptual is not None:
            terms["perceptual"] = cfg.perceptual_weight * self.perceptual(recon.clamp(0, 1), target)
        return terms, recon, out.quantized.tokens

    def training_step(self, frames: torch.Tensor, batch_idx: int) -> torch.Tensor:
        terms, recon, tokens = self.losses(frames)
        if not losses_are_finite(self, terms):
            return None  # Lightning skips the optimizer step
        loss = sum(terms.values())
        quantizer = self.tokenizer.quantizer
        # Usage of every book's codes; with a codebook per position a batch can use at most
        # batch / num_codes of them, so the token ids' usage is logged too.
        stats = codebook_stats(quantizer.code_ids(tokens), quantizer.total_codes)
        ids = codebook_stats(tokens, quantizer.num_codes)
        if (frames_per_s := self.throughput(len(frames))) is not None:
            self.log("train/frames_per_s", frames_per_s)
        self.log_dict({f"train/{k}": v for k, v in terms.items()})
        self.log_dict(
            {
                "train/loss": loss,
                "train/codebook_usage": stats["usage"],
                "train/token_id_usage": ids["usage"],
                "train/perplexity": stats["perplexity"],
            },
            prog_bar=True,
        )
        if self.global_step % self.image_log_every_n_steps == 0:
            self._log_grid("train/reconstructions", to_float_frames(frames), recon)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        revived = revive_and_sync_codes(self, self.tokenizer.quantizer)
        self.log("train/revived_codes", float(revived))

    def on_validation_epoch_start(self) -> None:
        self._val_token_counts = torch.zeros(
            self.tokenizer.quantizer.total_codes, device=self.device
        )

    def validation_step(self, frames: torch.Tensor, batch_idx: int) -> None:
        terms, recon, tokens = self.losses(frames)
        target = to_float_frames(frames)
        self._val_token_counts += torch.bincount(
            self.tokenizer.quantizer.code_ids(tokens).flatten(),
            minlength=len(self._val_token_counts),
        )
        self.log_dict({f"val/{k}": v for k, v in terms.items()})
        self.log_dict(
            {
                "val/loss": sum(terms.values()),
                "val/psnr": psnr(recon, target),
                "val/mae": F.l1_loss(recon.clamp(0, 1), target),
            },
            prog_bar=True,
        )
        if batch_idx == 0:
            self._log_grid("val/reconstructions", target, recon)

    def on_validation_epoch_end(self) -> None:
        counts = self._val_token_counts
        stats = count_stats(counts)
        ids = count_stats(counts.reshape(-1, self.tokenizer.quantizer.num_codes).sum(0))
        self.log_dict(
            {
                "val/codebook_usage": stats["usage"],
                "val/token_id_usage": ids["usage"],
                "val/perplexity": stats["perplexity"],
            }
        )

    def _log_grid(self, key: str, target: torch.Tensor, recon: torch.Tensor, n: int = 8) -> None:
        target, recon = target[:n], recon[:n].clamp(0, 1)
        rows = [to_uint8_image(x) for x in (target, recon, (recon - target).abs())]
        log_image(self.loggers, key, np.concatenate(rows, axis=0), self.global_step)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.tokenizer.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)

    def on_train_start(self) -> None:
        # A resumed checkpoint restores its optimizer's learning rate; the configured one
        # wins, so that a segment resumed with `tokenizer.module.lr=` fine-tunes at that rate.
        for group in self.optimizers().optimizer.param_groups:
            group["lr"] = self.lr
