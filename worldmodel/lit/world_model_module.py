"""Trains the GPT world model on tokens of a frozen tokenizer."""

import lightning as L
import torch
import torch.nn.functional as F

from worldmodel.data.segments import Segments
from worldmodel.lit.checkpoints import check_same_tokenizer
from worldmodel.lit.common import (
    Throughput,
    log_rollout,
    losses_are_finite,
)
from worldmodel.models.tokenizer import Tokenizer
from worldmodel.models.world_model import WorldModel, WorldModelConfig


def event_counts(predicted: torch.Tensor, actual: torch.Tensor, none: int) -> torch.Tensor:
    """(correct events, predicted events, actual events) for precision/recall, where an
    event is any class but `none` (a point scored either way, an episode end)."""
    correct = (predicted == actual) & (actual != none)
    return torch.stack([correct.sum(), (predicted != none).sum(), (actual != none).sum()]).float()


class WorldModelModule(L.LightningModule):
    """`model` is a dict of WorldModelConfig fields (plain, so checkpoints load weights-only);
    the frozen `tokenizer` is passed in by train.py and saved along for the bundle."""

    def __init__(
        self,
        model: dict,
        tokenizer: Tokenizer,
        lr: float = 1e-4,
        weight_decay: float = 0.01,
        lr_warmup_steps: int = 200,
        media_every_n_val: int = 1,
        rollout_context: int = 4,
        rollout_horizon: int = 12,
        changed_token_weight: float = 1.0,
        nonfinite: str = "stop",
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["tokenizer"])
        self.tokenizer = tokenizer.eval().requires_grad_(False)
        tok = tokenizer.cfg
        from_tokenizer = {
            "tokens_per_frame": tok.tokens_per_frame,
            "num_codes": tok.num_codes,
        }
        self.world_model = WorldModel(WorldModelConfig(**{**from_tokenizer, **model}))
        if compile:  # in place: the state-dict keys (and so checkpoints) stay the same
            self.world_model.compile()
        self.cfg = self.world_model.cfg
        self.lr, self.weight_decay, self.lr_warmup_steps = lr, weight_decay, lr_warmup_steps
        self.media_every_n_val = media_every_n_val
        self.rollout_context, self.rollout_horizon = rollout_context, rollout_horizon
        self.changed_token_weight = changed_token_weight
        self._counts: dict[str, torch.Tensor] = {}
        self._changed_counts = torch.zeros(2)
        self._val_runs = 0
        self.throughput = Throughput()

    def train(self, mode: bool = True):
        super().train(mode)
        self.tokenizer.eval()  # frozen: no dropout, no codebook revival
        return self

    def frame_tokens(self, batch: Segments) -> torch.Tensor:
        if batch.tokens is not None:  # tokenized once by the data pipeline
            return batch.tokens
        b, length = batch.frames.shape[:2]
        return self.tokenizer.encode(batch.frames.flatten(0, 1)).view(b, length, -1)

    def losses(self, batch: Segments) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        layout, k = self.cfg.layout, self.cfg.tokens_per_frame
        tokens, actions, mask = self.frame_tokens(batch), batch.actions, batch.mask
        sequence = self.world_model.interleave(tokens, actions)  # (B, L * layout.length)
        # The whole segment goes in, so every action position gets its reward/end label; the
        # last position's next-token prediction has no target and is ignored.
        out = self.world_model(sequence)

        # Next-token targets that are frame tokens of frames that really happened.
        target_pos = torch.arange(1, sequence.shape[1], device=self.device)
        is_frame_token = (
            layout.is_frame_token(target_pos)[None, :] & mask[:, layout.frame_of(target_pos)]
        )
        obs_logits = out.obs_logits[:, :-1][is_frame_token]
        obs_targets = sequence[:, 1:][is_frame_token]
        # A token that differs from the one at its place in the frame before: the ball and
        # the paddles moving. They are a few percent of the targets, the rest is a still
        # background, so `changed_token_weight` > 1 puts the loss where the game happens.
        changed = torch.zeros(
            *tokens.shape[:2], layout.length, dtype=torch.bool, device=self.device
        )
        changed[:, 1:, :k] = tokens[:, 1:] != tokens[:, :-1]  # the action slots stay False
        changed = changed.flatten(1)[:, 1:][is_frame_token]
        weights = 1.0 + (self.changed_token_weight - 1.0) * changed.float()
        obs_loss = F.cross_entropy(obs_logits, obs_targets, reduction="none")

        # Reward and end, read at each action position.
        action_pos = layout.action_positions(actions.shape[1], self.device)
        reward_logits = out.reward_logits[:, action_pos][mask]
        end_logits = out.end_logits[:, action_pos][mask]
        reward_targets = (torch.sign(batch.rewards) + 1).long()[mask]
        end_targets = batch.terminated.long()[mask]

        terms = {
            "obs": (obs_loss * weights).sum() / weights.sum(),
            "reward": F.cross_entropy(reward_logits, reward_targets),
            "end": F.cross_entropy(end_logits, end_targets),
        }
        hits = obs_logits.argmax(-1) == obs_targets
        predictions = {
            "token_accuracy": hits.float().mean(),
            "changed_counts": torch.stack([hits[changed].sum(), changed.sum()]).float(),
            "reward_counts": event_counts(reward_logits.argmax(-1), reward_targets, none=1),
            "end_counts": event_counts(end_logits.argmax(-1), end_targets, none=0),
        }
        return terms, predictions

    def training_step(self, batch: Segments, batch_idx: int) -> torch.Tensor:
        terms, predictions = self.losses(batch)
        if not losses_are_finite(self, terms):
            return None  # Lightning skips the optimizer step
        loss = sum(terms.values())
        frames = int(batch.mask.sum())
        if (frames_per_s := self.throughput(frames)) is not None:
            self.log_dict(
                {
                    "train/frames_per_s": frames_per_s,
                    "train/tokens_per_s": frames_per_s * self.cfg.layout.length,
                }
            )
        self.log_dict({f"train/{k}_loss": v for k, v in terms.items()})
        self.log_dict(
            {"train/loss": loss, "train/token_accuracy": predictions["token_accuracy"]},
            prog_bar=True,
        )
        hits, changed = predictions["changed_counts"]
        self.log("train/changed_token_accuracy", hits / changed.clamp_min(1))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._counts = {name: torch.zeros(3, device=self.device) for name in ("reward", "end")}
        self._changed_counts = torch.zeros(2, device=self.device)

    def validation_step(self, batch: Segments, batch_idx: int) -> None:
        terms, predictions = self.losses(batch)
        self.log_dict({f"val/{k}_loss": v for k, v in terms.items()})
        self.log_dict(
            {"val/loss": sum(terms.values()), "val/token_accuracy": predictions["token_accuracy"]},
            prog_bar=True,
        )
        for name in self._counts:
            self._counts[name] += predictions[f"{name}_counts"]
        self._changed_counts += predictions["changed_counts"]
        if batch_idx == 0 and self._val_runs % self.media_every_n_val == 0:
            log_rollout(self, batch, self.rollout_context, self.rollout_horizon)

    def on_validation_epoch_end(self) -> None:
        self._val_runs += 1
        for name, (tp, predicted, actual) in self._counts.items():
            self.log(f"val/{name}_precision", tp / predicted.clamp_min(1))
            self.log(f"val/{name}_recall", tp / actual.clamp_min(1))
        hits, changed = self._changed_counts
        self.log("val/changed_token_accuracy", hits / changed.clamp_min(1))

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        check_same_tokenizer(checkpoint, self.tokenizer)  # (init_from starts a new schedule)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(
            self.world_model.optimizer_groups(self.weight_decay), lr=self.lr, betas=(0.9, 0.95)
        )
        warmup = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / max(1, self.lr_warmup_steps))
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": warmup, "interval": "step"}}
