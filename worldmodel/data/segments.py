"""The batch the sequence stages train on: segments of consecutive steps, typed."""

from dataclasses import dataclass, fields, replace

import numpy as np
import torch


@dataclass
class Segments:
    """B segments of T consecutive steps (B, T, ...): frame t, the action taken on it and the
    reward and end it led to. Steps past an episode's end are zeros with `mask` False.
    Lightning moves it to the device with `.to(device)`."""

    frames: torch.Tensor  # (B, T, H, W, 3) uint8
    actions: torch.Tensor  # (B, T) long
    rewards: torch.Tensor  # (B, T) float
    terminated: torch.Tensor  # (B, T) bool: the episode ended with the action
    truncated: torch.Tensor  # (B, T) bool: cut off (time limit) after the action
    mask: torch.Tensor  # (B, T) bool: the step is in the episode (not padding)
    tokens: torch.Tensor | None = None  # (B, T, K) long, when the data pipeline tokenizes

    @classmethod
    def from_numpy(cls, arrays: dict[str, np.ndarray]) -> "Segments":
        """From ReplayBuffer.segments_at's arrays."""
        return cls(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()})

    def _map(self, fn) -> "Segments":
        changed = {f.name: fn(getattr(self, f.name)) for f in fields(self)}
        return replace(self, **{k: v for k, v in changed.items() if v is not None})

    def to(self, device: torch.device | str, **kwargs) -> "Segments":
        return self._map(lambda t: None if t is None else t.to(device, **kwargs))

    def __getitem__(self, rows: torch.Tensor | slice) -> "Segments":
        """The segments at `rows` (a mask, indices or a slice over B)."""
        return self._map(lambda t: None if t is None else t[rows])

    def __len__(self) -> int:
        return len(self.mask)
