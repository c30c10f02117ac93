"""Real games: ALE environments, frame preprocessing and data policies."""

from worldmodel.envs.atari import AtariBatch, EnvSpec
from worldmodel.envs.resize import AreaResize

__all__ = ["AtariBatch", "AreaResize", "EnvSpec"]
