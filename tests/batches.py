"""Typed batches for module tests: the fields a test gives, zeros for the rest."""

import torch

from worldmodel.data.segments import Segments


def segments(mask: torch.Tensor, **given: torch.Tensor) -> Segments:
    b, t = mask.shape
    zeros = {
        "frames": torch.zeros(b, t, 2, 2, 3, dtype=torch.uint8),
        "actions": torch.zeros(b, t, dtype=torch.long),
        "rewards": torch.zeros(b, t),
        "terminated": torch.zeros(b, t, dtype=torch.bool),
        "truncated": torch.zeros(b, t, dtype=torch.bool),
    }
    return Segments(mask=mask, **{**zeros, **given})
