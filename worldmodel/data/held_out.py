"""The held-out episodes, defined once: training validates on them, the eval and the reports
score on them. Collected once with a fixed seed, then read back from disk. No Lightning here
(eval and play do not pull in the training stack)."""

import functools
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from worldmodel.data.buffer import ReplayBuffer
from worldmodel.data.collector import Collector
from worldmodel.data.episode import Episode
from worldmodel.data.store import EpisodeStore
from worldmodel.envs.atari import EnvSpec
from worldmodel.envs.policies import TrackerPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeldOut:
    """Which episodes: tracker play (rallies and points happen) unless a policy is given."""

    episodes: int = 2
    max_steps: int = 1000  # each episode is cut at this many steps
    seed: int = 1234

    @classmethod
    def of_training(cls, train_config: str) -> "HeldOut":
        """The set a run validated on, from its resolved config (a bundle's train_config);
        the default set where the config does not say."""
        from omegaconf import OmegaConf

        config = OmegaConf.create(train_config or "{}")
        recorded = OmegaConf.select(config, "data.held_out", default=None) or {}
        fields = {k: v for k, v in dict(recorded).items() if k in asdict(cls())}
        return cls(**fields)


DEFAULT = HeldOut()
TRACKER = functools.partial(TrackerPolicy)


def held_out_episodes(
    spec: EnvSpec, root: str | Path, held_out: HeldOut = DEFAULT, make_policy: Callable = TRACKER
) -> list[Episode]:
    # Everything that shapes the episodes is in the folder name, so a change never reuses them.
    recipe = json.dumps(
        [spec.to_dict(), repr(make_policy), held_out.seed, held_out.episodes, held_out.max_steps]
    )
    digest = hashlib.sha1(recipe.encode()).hexdigest()[:8]
    tag = (
        f"{spec.game_id.replace('/', '_')}-{spec.frame_size}px-seed{held_out.seed}"
        f"-n{held_out.episodes}-{digest}"
    )
    store = EpisodeStore(Path(root) / tag)
    if len(store) < held_out.episodes:
        log.info("collecting %d held-out episodes into %s", held_out.episodes, store.root)
        capped = EnvSpec(**{**spec.to_dict(), "max_episode_steps": held_out.max_steps})
        buffer = ReplayBuffer(held_out.episodes, 1, (spec.frame_size,) * 2 + (3,))
        collector = Collector(
            capped, make_policy, held_out.episodes, held_out.seed, buffer, store, name="val"
        )
        while collector.episodes_finished < held_out.episodes:
            collector.collect(64)
        collector.close()
    return list(store.load_all())[: held_out.episodes]


def held_out_frames(spec: EnvSpec, root: str | Path, held_out: HeldOut = DEFAULT) -> np.ndarray:
    """The held-out tracker episodes' frames (N, h, w, 3), each episode's first left out: it
    is drawn in another palette, before the game starts."""
    return np.concatenate([e.frames[1:] for e in held_out_episodes(spec, root, held_out)])
