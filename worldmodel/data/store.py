"""A directory of episode files that a later run can reuse or replay."""

import warnings
from collections.abc import Iterator
from pathlib import Path

from worldmodel.data.episode import CorruptEpisodeError, Episode


class EpisodeStore:
    """Episodes as `<dir>/<name>.npz`, one compressed file each."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def paths(self) -> list[Path]:
        return sorted(self.root.glob("*.npz")) if self.root.is_dir() else []

    def __len__(self) -> int:
        return len(self.paths())

    def save(self, episode: Episode, name: str) -> Path:
        return episode.save(self.root / f"{name}.npz")

    def load_all(self) -> Iterator[Episode]:
        """Every readable episode; a corrupt file is skipped with a warning naming it."""
        paths = self.paths()
        if not paths:
            raise FileNotFoundError(f"no episode files (*.npz) in {self.root}")
        for path in paths:
            try:
                yield Episode.load(path)
            except CorruptEpisodeError as err:
                warnings.warn(f"skipping corrupt episode: {err}", stacklevel=2)
