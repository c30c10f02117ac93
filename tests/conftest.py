import functools
import os

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("WANDB_MODE", "disabled")

from worldmodel.envs import EnvSpec  # noqa: E402
from worldmodel.envs.policies import RandomPolicy, TrackerPolicy  # noqa: E402


@pytest.fixture(scope="session")
def spec() -> EnvSpec:
    return EnvSpec()


@pytest.fixture
def tracker():
    return functools.partial(TrackerPolicy)


@pytest.fixture
def random_policy():
    return functools.partial(RandomPolicy)
