"""Small pieces the LightningModules share: finite-loss guard, image logging, PSNR, dead-code
revival across ranks, LPIPS weights kept out of checkpoints."""

import logging
import math
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import Logger, WandbLogger
from PIL import Image

from worldmodel.data.segments import Segments
from worldmodel.models.quantizer import VectorQuantizer

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN/Inf; training stops rather than corrupting the weights."""


def check_finite(
    losses: dict[str, torch.Tensor], step: int, policy: str = "stop", agree=lambda finite: finite
) -> bool:
    """True if every loss term is finite. Otherwise `policy` "stop" raises (naming the step
    and the term; the last checkpoint on disk stays the last good one) and "skip" warns
    and returns False, so the caller skips this batch's update. `agree` turns the local
    verdict into one all processes share (under DDP every rank must skip together)."""
    if agree(all(bool(torch.isfinite(v).all()) for v in losses.values())):
        return True
    bad = [(name, v) for name, v in losses.items() if not torch.isfinite(v).all()]
    message = (
        f"loss term '{bad[0][0]}' is {bad[0][1].item()} at global step {step}"
        if bad
        else f"a loss on another process is not finite at global step {step}"
    )
    if policy == "skip":
        log.warning("%s: skipping this batch", message)
        return False
    raise NonFiniteLossError(
        f"{message}; the last checkpoint is kept: lower the learning rate and resume with "
        "ckpt_path=last, or set nonfinite=skip on the module to skip such batches"
    )


def losses_are_finite(module, terms: dict[str, torch.Tensor]) -> bool:
    """check_finite with the module's step, its `nonfinite` policy and a DDP-wide verdict."""
    return check_finite(
        terms,
        module.global_step,
        module.hparams.nonfinite,
        module.trainer.strategy.reduce_boolean_decision,
    )


class Throughput:
    """Items per second between consecutive training steps (waiting for data included)."""

    def __init__(self) -> None:
        self._last: float | None = None

    def __call__(self, items: int) -> float | None:
        now = time.perf_counter()
        rate = None if self._last is None else items / max(now - self._last, 1e-9)
        self._last = now
        return rate


def psnr(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean per-image PSNR in dB for images in [0, 1]."""
    mse = (reconstruction.clamp(0, 1) - target).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(1.0 / mse.clamp_min(1e-10))).mean()


def to_uint8_image(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [0, 1] -> one (H, N*W, 3) uint8 strip."""
    strip = torch.cat(list(images.detach().float().clamp(0, 1).cpu()), dim=-1)
    return (strip.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def log_image(loggers: list[Logger], key: str, image: np.ndarray, step: int) -> None:
    """W&B gets a media panel; any logger with a directory (CSV) gets a PNG file."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[image], step=step)
        elif getattr(logger, "log_dir", None):
            path = Path(logger.log_dir) / "media" / f"{key.replace('/', '_')}_{step:07d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path)


def revive_and_sync_codes(module: L.LightningModule, quantizer: VectorQuantizer) -> int:
    """Revive the quantizer's dead codes after an optimizer step; returns how many."""
    revived = quantizer.revive_dead_codes_()
    if module.trainer.world_size > 1:
        # Each rank revives from its own batch; DDP only syncs gradients, so make every
        # rank take rank 0's codebook or the copies drift apart. In place, on the device
        # (the strategy's broadcast pickles objects through the CPU).
        torch.distributed.broadcast(quantizer.codebook.weight.data, src=0)
        torch.distributed.broadcast(quantizer.idle_steps, src=0)
    return revived


class FrozenPerceptualWeights:
    """For a LightningModule with a `perceptual` (LPIPS) loss: its frozen weights always come
    from their own files (see models/perceptual.py), so keep those 9 MB out of every
    checkpoint, and fill them back in when loading one."""

    def state_dict(self, *args, **kwargs) -> dict:
        state = super().state_dict(*args, **kwargs)
        return {k: v for k, v in state.items() if not k.startswith("perceptual.")}

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        frozen = {k: v for k, v in super().state_dict().items() if k.startswith("perceptual.")}
        return super().load_state_dict({**frozen, **state_dict}, strict=strict, assign=assign)


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, floor: float, warmup_steps: int = 0
) -> dict:
    """Lightning's scheduler entry: the learning rate rises linearly over `warmup_steps`, then
    falls along a cosine to `floor` x at `total_steps` and stays there."""
    total = max(total_steps, 1)

    def scale(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        done = min(step - warmup_steps, total) / max(total - warmup_steps, 1)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, scale)
    return {"scheduler": schedule, "interval": "step"}


@torch.no_grad()
def log_rollout(module: L.LightningModule, batch: Segments, context: int, horizon: int) -> None:
    """Imagined frames under the real ones, for the same recorded actions (up to 4 segments
    without padding), from the module's `tokenizer` and `world_model`."""
    from worldmodel.engine import LearnedGame  # the engine imports the models, not Lightning

    whole = batch[batch.mask.all(dim=1)][:4]
    frames, actions = whole.frames, whole.actions
    horizon = min(horizon, frames.shape[1] - context)
    if horizon <= 0 or len(frames) == 0:
        return
    game = LearnedGame(module.tokenizer, module.world_model, temperature=1.0, seed=0)
    game.reset(frames[:, :context], actions[:, : context - 1])
    imagined = [game.step(actions[:, context - 1 + t])[0] for t in range(horizon)]
    real = frames[:, context : context + horizon]
    rows = []
    for i in range(len(frames)):
        rows.append(np.concatenate(list(real[i].cpu().numpy()), axis=1))
        rows.append(np.concatenate([f[i].cpu().numpy() for f in imagined], axis=1))
    log_image(module.loggers, "val/imagined_vs_real", np.concatenate(rows), module.global_step)
    module.world_model.train(module.training)
