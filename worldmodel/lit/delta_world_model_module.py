"""Trains the world model over context-aware tokens on a frozen DeltaTokenizer.

A segment of T steps becomes T blocks [frame t, action t, tokens of frame t+1 given both];
the data pipeline stores each step with its tokens (or the frozen tokenizer makes them
here, for batches without). The first frame of a
segment (an episode's first frame too) has no block before it: it is only embedded.
"""

from dataclasses import dataclass

import lightning as L
import torch

from worldmodel.data.segments import Segments
from worldmodel.frames import windows
from worldmodel.lit.checkpoints import check_same_tokenizer
from worldmodel.lit.common import (
    Throughput,
    log_rollout,
    losses_are_finite,
    warmup_cosine,
)
from worldmodel.lit.world_model_module import event_counts
from worldmodel.models.delta_tokenizer import DeltaTokenizer
from worldmodel.models.delta_world_model import DeltaWorldModel, DeltaWorldModelConfig
from worldmodel.models.score_slot import NOBODY


@dataclass
class Steps:
    """A batch of segments as the world model reads them (B, T, ...)."""

    frames: torch.Tensor  # (B, T, H, W, 3) uint8
    actions: torch.Tensor  # (B, T) long, taken in each frame
    tokens: torch.Tensor  # (B, T, K) the next frame's, given the frame and action (0: none)
    score_changes: torch.Tensor | None  # (B, T) with the score slot: who scored in it
    rewards: torch.Tensor  # (B, T) of each action
    ends: torch.Tensor  # (B, T) bool: the episode ended with the action
    steps: torch.Tensor  # (B, T) bool: the frame is in the episode (not padding)
    next_frames: torch.Tensor  # (B, T) bool: so is the frame after it (its tokens exist)

    @classmethod
    @torch.no_grad()
    def of(cls, batch: Segments, tokenizer: DeltaTokenizer) -> "Steps":
        frames, mask, actions = batch.frames, batch.mask, batch.actions.long()
        b, t = mask.shape
        next_frames = torch.zeros_like(mask)
        next_frames[:, :-1] = mask[:, 1:]
        if batch.tokens is not None:  # tokenized once by the data pipeline (FrameEncoder)
            tokens = batch.tokens.clone()
        else:
            tokens = torch.zeros(b, t, tokenizer.frame_tokens, dtype=torch.long)
            tokens = tokens.to(frames.device)
            # (frames before a segment's first repeat it)
            context = windows(frames, tokenizer.cfg.context_frames)[:, :-1]
            tokens[:, :-1] = tokenizer.encode(
                context.flatten(0, 1), actions[:, :-1].flatten(), frames[:, 1:].flatten(0, 1)
            ).view(b, t - 1, -1)
        tokens *= next_frames[..., None]
        score_changes, tokens = tokenizer.split_score(tokens)  # who scored: the score head's
        return cls(
            frames,
            actions,
            tokens,
            score_changes,
            batch.rewards,
            batch.terminated,
            mask,
            next_frames,
        )


class DeltaWorldModelModule(L.LightningModule):
    """`model` is a dict of DeltaWorldModelConfig fields (the token, action and image sizes
    come from the tokenizer); the frozen `tokenizer` is passed in by train.py and saved along
    for the bundle."""

    def __init__(
        self,
        model: dict,
        tokenizer: DeltaTokenizer,
        lr: float = 1e-3,
        lr_floor: float = 0.1,
        lr_warmup_steps: int = 200,
        weight_decay: float = 0.01,
        rollout_context: int = 4,
        rollout_horizon: int = 12,
        nonfinite: str = "stop",
    ) -> None:
        super().__init__()
        if not isinstance(tokenizer, DeltaTokenizer):
            raise ValueError(
                "world_model=delta needs a context-aware tokenizer (tokenizer=delta), got "
                f"{type(tokenizer).__name__}"
            )
        self.save_hyperparameters(ignore=["tokenizer"])
        self.tokenizer = tokenizer.eval().requires_grad_(False)
        tok = tokenizer.cfg
        from_tokenizer = {
            "tokens_per_frame": tok.input_tokens,
            "score_change": tok.score_slot,
            "ball_ids": tok.ball_ids if tok.ball_slot else None,
            "num_codes": tok.vocab_size,
            "num_actions": tok.num_actions,
            "resolution": tok.resolution,
        }
        self.world_model = DeltaWorldModel(DeltaWorldModelConfig(**{**model, **from_tokenizer}))
        self.cfg = self.world_model.cfg
        if not 2 <= rollout_context < self.cfg.max_frames:
            raise ValueError(
                f"rollout_context must be in [2, max_frames={self.cfg.max_frames}), "
                f"got {rollout_context}"
            )
        self.throughput = Throughput()
        self._counts: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True):
        super().train(mode)
        self.tokenizer.eval()  # frozen: no codebook revival
        return self

    def losses(self, batch: Segments) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        s = Steps.of(batch, self.tokenizer)
        terms, out = self.world_model.loss(
            s.frames,
            s.actions,
            s.tokens,
            s.rewards,
            s.ends,
            s.steps,
            s.next_frames,
            s.score_changes,
        )
        has_tokens = s.steps & s.next_frames
        token_logits, token_targets = out.token_logits[has_tokens], s.tokens[has_tokens]
        reward_logits = out.reward_logits[s.steps]
        reward_targets = (s.rewards.sign() + 1).long()[s.steps]
        end_logits, end_targets = out.end_logits[s.steps], s.ends.long()[s.steps]
        hits = token_logits.argmax(-1) == token_targets
        predictions = {
            "token_accuracy": hits.float().mean(),
            "frame_accuracy": hits.all(-1).float().mean(),  # every token of the frame right
            "reward_counts": event_counts(reward_logits.argmax(-1), reward_targets, none=1),
            "end_counts": event_counts(end_logits.argmax(-1), end_targets, none=0),
        }
        if self.tokenizer.ball is not None:  # the ball's column and row both right
            predictions["ball_accuracy"] = hits[:, :2].all(-1).float().mean()
        if s.score_changes is not None:
            scored = out.score_logits[has_tokens].argmax(-1)
            predictions["score_counts"] = event_counts(scored, s.score_changes[has_tokens], NOBODY)
        return terms, predictions

    def training_step(self, batch: Segments, batch_idx: int) -> torch.Tensor | None:
        terms, predictions = self.losses(batch)
        if not losses_are_finite(self, terms):
            return None  # Lightning skips the optimizer step
        loss = sum(terms.values())
        if (frames_per_s := self.throughput(int(batch.mask.sum()))) is not None:
            self.log("train/frames_per_s", frames_per_s)
        self.log_dict({f"train/{k}_loss": v for k, v in terms.items()})
        self.log_dict(
            {"train/loss": loss, "train/token_accuracy": predictions["token_accuracy"]},
            prog_bar=True,
        )
        self.log("train/frame_accuracy", predictions["frame_accuracy"])
        return loss

    def on_validation_epoch_start(self) -> None:
        events = ("reward", "end") + ("score",) * (self.tokenizer.score is not None)
        self._counts = {name: torch.zeros(3, device=self.device) for name in events}

    def validation_step(self, batch: Segments, batch_idx: int) -> None:
        terms, predictions = self.losses(batch)
        self.log_dict({f"val/{k}_loss": v for k, v in terms.items()})
        self.log_dict(
            {"val/loss": sum(terms.values()), "val/token_accuracy": predictions["token_accuracy"]},
            prog_bar=True,
        )
        self.log("val/frame_accuracy", predictions["frame_accuracy"])
        if "ball_accuracy" in predictions:
            self.log("val/ball_accuracy", predictions["ball_accuracy"])
        for name in self._counts:
            self._counts[name] += predictions[f"{name}_counts"]
        if batch_idx == 0:
            log_rollout(self, batch, self.hparams.rollout_context, self.hparams.rollout_horizon)

    def on_validation_epoch_end(self) -> None:
        for name, (tp, predicted, actual) in self._counts.items():
            self.log(f"val/{name}_precision", tp / predicted.clamp_min(1))
            self.log(f"val/{name}_recall", tp / actual.clamp_min(1))

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        check_same_tokenizer(checkpoint, self.tokenizer)

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        optimizer = torch.optim.AdamW(
            self.world_model.optimizer_groups(hp.weight_decay), lr=hp.lr, betas=(0.9, 0.95)
        )
        schedule = warmup_cosine(optimizer, self.trainer.max_steps, hp.lr_floor, hp.lr_warmup_steps)
        return {"optimizer": optimizer, "lr_scheduler": schedule}
