"""How a stage was trained: each segment's command, revision, steps and wall time.

The record travels inside the stage's checkpoints, so a run that was killed and resumed
with `ckpt_path=last` still accounts for every segment up to the checkpoint it went on
from, and resuming a finished stage adds nothing.
"""

import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback


class TrainingRecord(Callback):
    def __init__(self, command: str, git_revision: str) -> None:
        self.command, self.git_revision = command, git_revision
        self.earlier: list[dict[str, Any]] = []  # segments restored from the checkpoint
        self.trainer: L.Trainer | None = None
        self.started_at, self.first_step = 0.0, 0
        self.ended_at: float | None = None

    @property
    def state_key(self) -> str:
        return "TrainingRecord"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.trainer, self.started_at, self.first_step = trainer, time.time(), trainer.global_step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.ended_at = time.time()  # the checkpoints saved after fit and train_info agree

    def segments(self) -> list[dict[str, Any]]:
        if self.trainer is None or self.trainer.global_step == self.first_step:
            return list(self.earlier)  # this process trained no step
        return [
            *self.earlier,
            {
                "command": self.command,
                "git_revision": self.git_revision,
                "from_step": self.first_step,
                "to_step": self.trainer.global_step,
                "wall_time_s": round((self.ended_at or time.time()) - self.started_at, 1),
            },
        ]

    def state_dict(self) -> dict[str, Any]:
        return {"segments": self.segments()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.earlier = list(state_dict["segments"])

    def summary(self, **extra: Any) -> dict[str, Any]:
        """train_info.json: the first segment's command and revision, the total wall time."""
        segments = self.segments()
        first = segments[0] if segments else {}
        return {
            "command": first.get("command", self.command),
            "git_revision": first.get("git_revision", self.git_revision),
            "wall_time_s": round(sum(s["wall_time_s"] for s in segments), 1),
            "global_step": segments[-1]["to_step"] if segments else 0,
            **extra,
            "segments": segments,
        }
