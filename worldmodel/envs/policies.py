"""Data policies: who presses the buttons while we record the game.

A random agent rarely returns the ball, so a world model trained on it never sees rallies
or points won. The tracker reads the ball and paddle from the emulator RAM and plays
the game reasonably; noise, reaction delay and aim jitter make it imperfect on purpose
so that misses, points for both sides and varied bounce angles all appear in the data.

Policies are built in two steps: Hydra instantiates a partial with the policy's own
settings, and the collector completes it with the env facts it knows
(`action_meanings`, `num_envs`, `seed`).
"""

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from worldmodel.envs import pong_ram


class Policy(Protocol):
    def act(self, frames: np.ndarray, ram: np.ndarray) -> np.ndarray:
        """One action index per env, given (N, H, W, 3) frames and (N, 128) RAM."""

    def episode_started(self, env_mask: np.ndarray) -> None:
        """Forget per-episode state for the envs in `env_mask` (a new episode began)."""


def action_index(action_meanings: Sequence[str], name: str) -> int:
    if name not in action_meanings:
        raise ValueError(f"action {name!r} not in this game's actions {list(action_meanings)}")
    return list(action_meanings).index(name)


class RandomPolicy:
    """Uniformly random actions (the seed project's data policy)."""

    def __init__(self, action_meanings: Sequence[str], num_envs: int, seed: int) -> None:
        self.num_actions = len(action_meanings)
        self.num_envs = num_envs
        self.rng = np.random.default_rng(seed)

    def act(self, frames: np.ndarray, ram: np.ndarray) -> np.ndarray:
        return self.rng.integers(self.num_actions, size=self.num_envs)

    def episode_started(self, env_mask: np.ndarray) -> None:
        pass


class TrackerPolicy:
    """Moves the player's paddle toward where the ball will cross the paddle's column.

    It extrapolates the ball's velocity (from the last two RAM readings), reflects the
    path off the top and bottom walls, and aims at that point plus a random offset drawn
    once per approach, so that the ball leaves the paddle at different angles. While the
    ball moves away it drifts back to the centre. `reaction_delay` makes it act on stale
    RAM, `epsilon` replaces an action with a random one.
    """

    def __init__(
        self,
        action_meanings: Sequence[str],
        num_envs: int,
        seed: int,
        *,
        ball_x: int = pong_ram.BALL_X,
        ball_y: int = pong_ram.BALL_Y,
        paddle_y: int = pong_ram.PLAYER_Y,
        paddle_x: float = 188.0,
        paddle_offset: float = 8.0,
        wall_top: float = 38.0,
        wall_bottom: float = 203.0,
        up_action: str = "RIGHT",
        down_action: str = "LEFT",
        deadzone: float = 3.0,
        aim_noise: float = 4.0,
        epsilon: float = 0.05,
        reaction_delay: int = 0,
    ) -> None:
        self.rng = np.random.default_rng(seed)
        self.num_envs = num_envs
        self.num_actions = len(action_meanings)
        self.noop = action_index(action_meanings, action_meanings[0])
        self.up = action_index(action_meanings, up_action)
        self.down = action_index(action_meanings, down_action)
        self.ram_index = (ball_x, ball_y, paddle_y)
        self.paddle_x, self.paddle_offset = paddle_x, paddle_offset
        self.wall_top, self.wall_bottom = wall_top, wall_bottom
        self.deadzone, self.aim_noise, self.epsilon = deadzone, aim_noise, epsilon
        # Ring of past RAM readings: index 0 is the newest.
        self.history = np.zeros((reaction_delay + 2, num_envs, 3), np.float32)
        self.aim = np.zeros(num_envs, np.float32)
        self.approaching = np.zeros(num_envs, bool)

    def episode_started(self, env_mask: np.ndarray) -> None:
        self.history[:, env_mask] = 0.0
        self.approaching[env_mask] = False

    def _intercept_y(self, x: np.ndarray, y: np.ndarray, vx: np.ndarray, vy: np.ndarray):
        steps = (self.paddle_x - x) / np.where(vx > 0, vx, 1.0)
        span = self.wall_bottom - self.wall_top
        # Unfold the bounces: the path in an infinitely tall strip, folded back into range.
        unfolded = np.mod(y + vy * steps - self.wall_top, 2 * span)
        return self.wall_top + np.where(unfolded > span, 2 * span - unfolded, unfolded)

    def act(self, frames: np.ndarray, ram: np.ndarray) -> np.ndarray:
        self.history = np.roll(self.history, 1, axis=0)
        self.history[0] = ram[:, self.ram_index]
        (x, y, paddle), (x_prev, y_prev, _) = self.history[-2].T, self.history[-1].T
        ball_visible = (y > 0) & (y_prev > 0)
        vx, vy = x - x_prev, y - y_prev
        toward_player = ball_visible & (vx > 0)

        # A fresh aim offset each time the ball turns toward the player.
        new_approach = toward_player & ~self.approaching
        self.aim[new_approach] = self.rng.normal(0.0, self.aim_noise, new_approach.sum())
        self.approaching = toward_player

        centre = 0.5 * (self.wall_top + self.wall_bottom)
        target = np.where(ball_visible, y, centre)
        target = np.where(toward_player, self._intercept_y(x, y, vx, vy) + self.aim, target)
        error = target - (paddle + self.paddle_offset)
        actions = np.where(error > self.deadzone, self.down, self.noop)
        actions = np.where(error < -self.deadzone, self.up, actions)

        explore = self.rng.random(self.num_envs) < self.epsilon
        return np.where(explore, self.rng.integers(self.num_actions, size=self.num_envs), actions)


class MixedPolicy:
    """Each env picks one of several policies per episode, with the given weights."""

    def __init__(
        self,
        action_meanings: Sequence[str],
        num_envs: int,
        seed: int,
        *,
        policies: Sequence[Callable[..., Policy]],
        weights: Sequence[float] | None = None,
    ) -> None:
        self.rng = np.random.default_rng(seed)
        self.policies = [
            make(action_meanings=action_meanings, num_envs=num_envs, seed=seed + 1 + k)
            for k, make in enumerate(policies)
        ]
        w = np.ones(len(self.policies)) if weights is None else np.asarray(weights, float)
        self.weights = w / w.sum()
        self.choice = self.rng.choice(len(self.policies), size=num_envs, p=self.weights)

    def episode_started(self, env_mask: np.ndarray) -> None:
        self.choice[env_mask] = self.rng.choice(
            len(self.policies), size=int(env_mask.sum()), p=self.weights
        )
        for policy in self.policies:
            policy.episode_started(env_mask)

    def act(self, frames: np.ndarray, ram: np.ndarray) -> np.ndarray:
        # Every policy sees every step, so stateful ones (the tracker) stay up to date.
        all_actions = np.stack([p.act(frames, ram) for p in self.policies])
        return all_actions[self.choice, np.arange(all_actions.shape[1])]
