"""One episode of real play, and its compressed on-disk file (written atomically)."""

import os
import tempfile
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np


class CorruptEpisodeError(ValueError):
    """An episode file that cannot be read back (truncated, not an episode, inconsistent)."""


@dataclass
class Episode:
    """Step t holds the frame the agent saw, the action it took and what followed.

    frames (T, H, W, 3) uint8, actions (T,) int64, rewards (T,) float32, terminated and
    truncated (T,) bool: whether the episode ended right after action t.
    """

    frames: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray

    def __post_init__(self) -> None:
        lengths = {f.name: len(getattr(self, f.name)) for f in fields(self)}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"episode arrays differ in length: {lengths}")
        if self.frames.dtype != np.uint8 or self.frames.ndim != 4:
            raise ValueError(
                f"frames must be (T, H, W, C) uint8, got {self.frames.dtype} {self.frames.shape}"
            )

    def __len__(self) -> int:
        return len(self.actions)

    def save(self, path: str | Path) -> Path:
        """Write to `path` (.npz) via a temp file + rename, so a crash never leaves half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez_compressed(f, **{fl.name: getattr(self, fl.name) for fl in fields(self)})
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Episode":
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {f.name: data[f.name] for f in fields(cls)}
            return cls(**arrays)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise CorruptEpisodeError(f"cannot read episode file {path}: {err}") from err
