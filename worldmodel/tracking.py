"""Experiment tracking: a W&B logger that works with or without a network."""

import os

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
