"""Experiment tracking: a W&B logger that works with or without a network."""

import os
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger


def wandb_has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = os.path.expanduser("~/.netrc")
    return os.path.exists(netrc) and "api.wandb.ai" in open(netrc).read()


def wandb_logger(
    project: str,
    save_dir: str,
    name: str | None = None,
    group: str | None = None,
    tags: list[str] | None = None,
) -> WandbLogger:
    """Online when a key is configured, offline otherwise (sync later with `wandb sync`).

    WANDB_MODE in the environment (e.g. `disabled` in tests) always wins.
    """
    offline = os.environ.get("WANDB_MODE", "offline" if not wandb_has_credentials() else "online")
    return WandbLogger(
        project=project,
        save_dir=save_dir,
        name=name,
        group=group,
        tags=list(tags or []),
        offline=offline == "offline",
        mode=None if offline == "offline" else offline,
    )


def finish_loggers(loggers: list) -> None:
    """Close W&B runs (also after an exception, so a multirun never leaks one run into the
    next) and say how to upload offline ones."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            run = logger.experiment
            offline = getattr(run.settings, "mode", "") == "offline"
            run_dir = run.dir
            run.finish()
            if offline:
                print(f"W&B run saved offline; upload it with: wandb sync {Path(run_dir).parent}")
