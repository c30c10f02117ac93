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


def train_smoke(root, exp: str):
    """One real `python -m worldmodel.train +exp=EXP` run into `root` (the whole pipeline:
    collect, tokenizer, world model, bundle)."""
    import subprocess
    import sys
    from pathlib import Path

    cmd = [
        sys.executable,
        "-m",
        "worldmodel.train",
        f"+exp={exp}",
        f"hydra.run.dir={root}",
        f"paths.data_dir={root / 'data'}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(root)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """`+exp=smoke` (the context-aware design), shared by the tests that need a bundle."""
    return train_smoke(tmp_path_factory.mktemp("smoke"), "smoke")


@pytest.fixture(scope="session")
def smoke_iris_run(tmp_path_factory):
    """`+exp=smoke_iris` (the IRIS design), for what only IRIS models have."""
    return train_smoke(tmp_path_factory.mktemp("smoke_iris"), "smoke_iris")
