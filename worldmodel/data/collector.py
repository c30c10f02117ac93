"""Plays the real game with a data policy and writes every step into a replay buffer."""

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from worldmodel.data.buffer import ReplayBuffer
from worldmodel.data.episode import Episode
from worldmodel.data.store import EpisodeStore
from worldmodel.envs.atari import AtariBatch, EnvSpec

if TYPE_CHECKING:  # (the data module imports this one)
    from worldmodel.data.datamodule import FrameEncoder


class Collector:
    """Env i writes to buffer stream i; finished episodes optionally go to an EpisodeStore."""

    def __init__(
        self,
        spec: EnvSpec,
        make_policy: Callable,
        num_envs: int,
        seed: int,
        buffer: ReplayBuffer,
        save_to: EpisodeStore | None = None,
        name: str = "collector",
        encode: "FrameEncoder | None" = None,
    ) -> None:
        """`encode` (a FrameEncoder), when given, tokenizes each new step once."""
        self.envs = AtariBatch(spec, num_envs, seed)
        self.policy = make_policy(
            action_meanings=self.envs.action_meanings, num_envs=num_envs, seed=seed
        )
        self.buffer, self.save_to, self.name, self.encode = buffer, save_to, name, encode
        self.streams = np.arange(num_envs)
        self.frames = self.envs.reset()
        # The last frames of each env's episode, up to the one it acts on (what encode reads).
        context = 1 if encode is None else encode.context_frames
        self.recent = np.repeat(self.frames[:, None], context, axis=1)
        self.episode_ids = buffer.new_episode_ids(num_envs)
        self.episodes_finished = 0
        # Only kept when saving: the steps of each env's current episode.
        self._open: list[list[tuple]] = [[] for _ in range(num_envs)]

    def collect(self, steps: int) -> None:
        """Step every env `steps` times."""
        for _ in range(steps):
            frames = self.frames
            actions = self.policy.act(frames, self.envs.ram)
            self.frames, rewards, terminated, truncated = self.envs.step(actions)
            tokens = None if self.encode is None else self.encode(self.recent, actions, self.frames)
            self.buffer.add_steps(
                self.streams,
                self.episode_ids,
                frames,
                actions,
                rewards,
                terminated,
                truncated,
                tokens,
            )
            if self.save_to is not None:
                self._record(frames, actions, rewards, terminated, truncated)
            done = terminated | truncated
            self.recent = np.concatenate([self.recent[:, 1:], self.frames[:, None]], 1)
            self.recent[done] = self.frames[done, None]  # a new episode's first frame
            if done.any():
                self.episode_ids[done] = self.buffer.new_episode_ids(int(done.sum()))
                self.policy.episode_started(done)
                self.episodes_finished += int(done.sum())

    def _record(self, *step: np.ndarray) -> None:
        terminated, truncated = step[3], step[4]
        for i, steps in enumerate(self._open):
            steps.append(tuple(field[i] for field in step))
            if terminated[i] or truncated[i]:
                episode = Episode(*(np.stack(column) for column in zip(*steps, strict=True)))
                self.save_to.save(episode, f"{self.name}-env{i}-{int(self.episode_ids[i]):06d}")
                steps.clear()

    def close(self) -> None:
        self.envs.close()
