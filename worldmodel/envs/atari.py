"""ALE games as a batch of gymnasium envs that hand back 64x64 frames, full frames and RAM.

Why not ALE's native `AtariVectorEnv`: it does not expose the emulator RAM, which the
tracker data policy and the detector validation read. A Python loop over a handful of
gymnasium envs (each step is one C++ call) plus one batched resize is fast enough
(see experiments/bench_collect.py) and works for any ALE game id.
"""

from dataclasses import asdict, dataclass

import ale_py
import gymnasium as gym
import numpy as np

from worldmodel.envs.resize import AreaResize

gym.register_envs(ale_py)


@dataclass(frozen=True)
class EnvSpec:
    """Everything needed to rebuild the real game a model was trained on."""

    game_id: str = "ALE/Pong-v5"
    frame_size: int = 64
    frameskip: int = 4
    # IRIS uses NoFrameskip-v4 semantics: no sticky actions unless asked for.
    repeat_action_probability: float = 0.0
    max_episode_steps: int | None = None

    def make(self) -> gym.Env:
        """One full-frame RGB gymnasium env; unknown game ids give a clear ValueError."""
        try:
            return gym.make(
                self.game_id,
                frameskip=self.frameskip,
                repeat_action_probability=self.repeat_action_probability,
                max_episode_steps=self.max_episode_steps,
                obs_type="rgb",
            )
        except gym.error.Error as err:
            raise ValueError(
                f"unknown game id {self.game_id!r} ({err}); ALE ids look like 'ALE/Pong-v5'"
            ) from err

    def action_meanings(self) -> tuple[str, ...]:
        env = self.make()
        try:
            return tuple(env.unwrapped.get_action_meanings())
        finally:
            env.close()

    def to_dict(self) -> dict:
        return asdict(self)


class AtariBatch:
    """`num_envs` copies of one game, stepped together with same-step auto-reset.

    After `step`, `frames` holds the preprocessed observation each env will act on next
    (the first frame of a new episode where the previous one just ended), `full_frames`
    the same at native resolution (for display) and `ram` the emulator RAM.
    """

    def __init__(self, spec: EnvSpec, num_envs: int = 1, seed: int = 0) -> None:
        self.spec = spec
        self.num_envs = num_envs
        self.envs = [spec.make() for _ in range(num_envs)]
        self._seeds = np.random.default_rng(seed)
        first = self.envs[0].unwrapped
        self.action_meanings: tuple[str, ...] = tuple(first.get_action_meanings())
        height, width, channels = self.envs[0].observation_space.shape
        self.resize = AreaResize((height, width), (spec.frame_size, spec.frame_size))
        self.full_frames = np.zeros((num_envs, height, width, channels), np.uint8)
        self.ram = np.zeros((num_envs, first.ale.getRAMSize()), np.uint8)
        self.frames = np.zeros((num_envs, spec.frame_size, spec.frame_size, channels), np.uint8)

    def _reset_one(self, i: int) -> None:
        obs, _ = self.envs[i].reset(seed=int(self._seeds.integers(2**31)))
        self.full_frames[i] = obs
        self.ram[i] = self.envs[i].unwrapped.ale.getRAM()

    def reset(self) -> np.ndarray:
        for i in range(self.num_envs):
            self._reset_one(i)
        self.frames = self.resize(self.full_frames)
        return self.frames

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Act in every env; returns (next frames, rewards, terminated, truncated)."""
        rewards = np.zeros(self.num_envs, np.float32)
        terminated = np.zeros(self.num_envs, bool)
        truncated = np.zeros(self.num_envs, bool)
        for i, (env, action) in enumerate(zip(self.envs, actions, strict=True)):
            obs, rewards[i], terminated[i], truncated[i], _ = env.step(int(action))
            if terminated[i] or truncated[i]:
                self._reset_one(i)
            else:
                self.full_frames[i] = obs
                self.ram[i] = env.unwrapped.ale.getRAM()
        self.frames = self.resize(self.full_frames)
        return self.frames, rewards, terminated, truncated

    def close(self) -> None:
        for env in self.envs:
            env.close()
