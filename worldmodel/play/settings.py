"""`python -m worldmodel.play` settings: every option with its default, checked before the
bundle is read; and which device to play on."""

from dataclasses import dataclass, field

import torch

MODES = ("dream", "real", "side")
HEADLESS_POLICIES = ("random", "up", "down", "noop")


# How arrow keys map to a game's action names, where they are not plain UP / DOWN.
KEY_NAMES = {"ALE/Pong-v5": {"up": "RIGHT", "down": "LEFT"}}


@dataclass
class PlaySettings:
    """`python -m worldmodel.play key=value ...`: every option, with its default."""

    ckpt: str = "models/pong_tiny.bundle.ckpt"  # a bundle written by python -m worldmodel.train
    mode: str = "dream"  # dream (play the model) | real (the emulator) | side (both, same keys)
    fps: int = 30
    scale: int = 6  # window pixels per model pixel
    device: str = "auto"  # auto | cpu | cuda | mps
    temperature: float = 1.0
    top_p: float = 1.0  # sample from the most likely tokens that make up this much probability
    greedy: bool = False
    seed: int = 0
    # torch.compile the forward and decoder, in the background (1.5-2x FPS on CPU once done;
    # needs a C++ compiler, without one it warns and plays uncompiled)
    compile: bool = True
    headless: bool = False  # no window (SDL dummy driver): for servers and tests
    steps: int = 0  # stop after this many frames (0: until the window closes)
    record: str | None = None  # write the session to this .mp4 / .gif
    policy: str = "random"  # who presses keys in headless mode: random | up | down | noop
    key_names: dict[str, dict[str, str]] = field(default_factory=lambda: dict(KEY_NAMES))

    def check(self) -> None:
        """Every out-of-range setting is one clear error, before the bundle is read."""
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.policy not in HEADLESS_POLICIES:
            raise ValueError(f"policy must be one of {HEADLESS_POLICIES}, got {self.policy!r}")
        for name in ("fps", "scale"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0: greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0 (0: until the window closes), got {self.steps}")
        if self.record and not str(self.record).endswith((".mp4", ".gif")):
            raise ValueError(f"record must name an .mp4 or .gif file, got {self.record!r}")


def pick_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
