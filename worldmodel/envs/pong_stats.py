"""How well a data policy covers Pong: points each way, rally length, ball returns."""

from collections.abc import Callable

import numpy as np

from worldmodel.envs.atari import AtariBatch, EnvSpec
from worldmodel.envs.pong_ram import BALL_X, BALL_Y


def count_returns(ball_x: np.ndarray, ball_y: np.ndarray, min_x: float = 150.0) -> np.ndarray:
    """Per env, how often the ball turned back at the player's (right) side.

    ball_x, ball_y: (T, N) RAM readings. A return is a visible ball whose horizontal
    velocity flips from rightward to leftward beyond `min_x`.
    """
    vx = np.diff(ball_x.astype(np.float32), axis=0)
    visible = (ball_y[1:-1] > 0) & (ball_y[2:] > 0) & (ball_y[:-2] > 0)
    turned = (vx[:-1] > 0) & (vx[1:] < 0) & visible & (ball_x[1:-1] > min_x)
    return turned.sum(axis=0)


def policy_stats(
    spec: EnvSpec, make_policy: Callable, steps: int, num_envs: int = 4, seed: int = 0
) -> dict[str, float]:
    """Play `steps` steps in each of `num_envs` envs and summarise, per 1000 steps."""
    envs = AtariBatch(spec, num_envs, seed)
    policy = make_policy(action_meanings=envs.action_meanings, num_envs=num_envs, seed=seed)
    frames = envs.reset()
    rewards = np.zeros((steps, num_envs), np.float32)
    ball = np.zeros((steps, num_envs, 2), np.float32)
    for t in range(steps):
        ball[t] = envs.ram[:, [BALL_X, BALL_Y]]
        frames, rewards[t], terminated, truncated = envs.step(policy.act(frames, envs.ram))
        policy.episode_started(terminated | truncated)
    envs.close()

    per_k = 1000.0 / (steps * num_envs)
    points = np.count_nonzero(rewards, axis=0).sum()
    return {
        "points_won_per_1k": float((rewards > 0).sum() * per_k),
        "points_lost_per_1k": float((rewards < 0).sum() * per_k),
        "returns_per_1k": float(count_returns(ball[..., 0], ball[..., 1]).sum() * per_k),
        "mean_rally_steps": float(steps * num_envs / max(points, 1)),
    }
