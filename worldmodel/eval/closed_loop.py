"""Closed loop: a controller plays the dream the way a person would, and the same controller
plays the real game from the same start; then both games are judged by what a player sees.

The controller sees only frames (through the Pong detector): where the dream draws no ball
it has nothing to follow, and a dream whose ball jumps makes it chase the jump, just as a
person would. Open-loop error per horizon cannot show that; this can.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from worldmodel.bundle import Bundle
from worldmodel.engine import LearnedGame
from worldmodel.envs.atari import AtariBatch
from worldmodel.envs.policies import action_index
from worldmodel.envs.pong_detector import detect
from worldmodel.eval.events import (
    Court,
    Track,
    absences,
    ball_events,
    longest_rally,
    score_changes,
    serves,
    teleports,
)
from worldmodel.eval.fidelity import reconstruct
from worldmodel.frames import windows


class BallFollower:
    """Moves the player's paddle toward the ball's height, as read from the frame; with no
    ball in sight, toward the middle of the court. Inside `deadzone_px` it stands still, and
    with probability `epsilon` it presses a random button. Same interface as the data
    policies (it ignores the RAM), so it can play the real game and the dream alike."""

    def __init__(
        self,
        action_meanings: Sequence[str],
        num_envs: int,
        seed: int,
        *,
        up_action: str = "RIGHT",
        down_action: str = "LEFT",
        deadzone_px: float = 1.0,
        epsilon: float = 0.05,
    ) -> None:
        self.rng = np.random.default_rng(seed)
        self.num_envs, self.num_actions = num_envs, len(action_meanings)
        self.noop = action_index(action_meanings, action_meanings[0])
        self.up = action_index(action_meanings, up_action)
        self.down = action_index(action_meanings, down_action)
        self.deadzone_px, self.epsilon = deadzone_px, epsilon

    def act(self, frames: np.ndarray, ram: np.ndarray | None = None) -> np.ndarray:
        seen = detect(frames)
        middle = float(np.mean(Court(*frames.shape[1:3]).playfield))
        target = np.where(seen.ball_present, seen.ball_xy[:, 1], middle)
        error = np.nan_to_num(target - seen.player_y)  # a hidden paddle: stand still
        actions = np.where(error > self.deadzone_px, self.down, self.noop)
        actions = np.where(error < -self.deadzone_px, self.up, actions)
        explore = self.rng.random(self.num_envs) < self.epsilon
        return np.where(explore, self.rng.integers(self.num_actions, size=self.num_envs), actions)

    def episode_started(self, env_mask: np.ndarray) -> None:
        pass


@dataclass
class Game:
    """One game as played: frames (T, h, w, 3) uint8, and the action that led to each and the
    reward of arriving in it (T,)."""

    frames: np.ndarray
    actions: np.ndarray
    points: np.ndarray

    def __len__(self) -> int:
        return len(self.points)


@dataclass
class Start:
    """The real frames every game starts from, and the actions taken between them."""

    frames: np.ndarray  # (C, h, w, 3)
    actions: np.ndarray  # (C - 1,)


def play_real(
    bundle: Bundle, steps: int, context: int, seed: int, warmup: int
) -> tuple[Start, Game]:
    """The controller plays the real game: `warmup` steps (past the reset frame's other
    palette, into play), the last `context` of which are the start; then `steps` more."""
    if not 1 <= context <= warmup:
        raise ValueError(f"context must be in [1, warmup={warmup}], got {context}")
    env = AtariBatch(bundle.spec, 1, seed)
    controller = BallFollower(env.action_meanings, 1, seed)
    frames, recorded, actions, rewards = env.reset(), [], [], []
    for _ in range(warmup + steps):
        action = controller.act(frames)
        frames, reward, terminated, truncated = env.step(action)
        controller.episode_started(terminated | truncated)
        recorded.append(frames[0].copy())
        actions.append(int(action[0]))
        rewards.append(float(reward[0]))
    env.close()
    recorded, actions, rewards = np.stack(recorded), np.array(actions), np.array(rewards)
    start = Start(recorded[warmup - context : warmup], actions[warmup - context + 1 : warmup])
    return start, Game(recorded[warmup:], actions[warmup:], rewards[warmup:])


@torch.inference_mode()
def play_dream(
    bundle: Bundle,
    start: Start,
    steps: int,
    greedy: Sequence[bool],
    seed: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    compile: bool = False,
) -> list[Game]:
    """The controller plays len(greedy) dreams at once from `start` (greedy[i]: game i
    takes the likeliest tokens instead of sampling)."""
    n = len(greedy)
    game = LearnedGame(
        bundle.tokenizer,
        bundle.world_model,
        temperature=temperature,
        top_p=top_p,
        greedy=greedy,
        seed=seed,
        compile=compile,
    )
    context = torch.from_numpy(start.frames).expand(n, *start.frames.shape)
    actions = torch.from_numpy(start.actions).expand(n, -1)
    frames = game.reset(context, actions).cpu().numpy()
    controller = BallFollower(bundle.action_meanings, n, seed)
    recorded, taken, rewards = [], [], []
    for _ in range(steps):
        actions = controller.act(frames)
        frame, reward, _ = game.step(torch.from_numpy(actions))
        frames = frame.cpu().numpy()
        recorded.append(frames)
        taken.append(actions)
        rewards.append(reward.cpu().numpy())
    recorded, taken, rewards = (np.stack(x, 1) for x in (recorded, taken, rewards))
    return [Game(recorded[i], taken[i], rewards[i]) for i in range(n)]


def game_stats(game: Game) -> dict[str, float]:
    """What a player would notice, over one game (rates per 100 or 1,000 steps)."""
    seen = detect(game.frames)
    track, court, steps = Track.of(seen, game.points), Court(*game.frames.shape[1:3]), len(game)
    turns = ball_events(track, court)
    per_100 = 100 / steps
    return {
        "steps": steps,
        "ball_seen": float(seen.ball_present.mean()),
        "ghost_ball_frames": float((seen.ball_blobs > 1).mean()),
        "ghost_paddle_frames": float(seen.paddle_ghost.mean()),
        "both_paddles_seen": float((~np.isnan(seen.player_y) & ~np.isnan(seen.opponent_y)).mean()),
        "teleports_per_100": len(teleports(track)) * per_100,
        "paddle_reversals_per_100": len(turns["edge_reversal"]) * per_100,
        "paddle_bounces_per_100": len(turns["paddle_bounce"]) * per_100,
        "midfield_reversals_per_100": len(turns["midfield_reversal"]) * per_100,
        "wall_bounces_per_100": len(turns["wall_bounce"]) * per_100,
        "points_won_per_1000": float((game.points > 0).sum()) * 10 * per_100,
        "points_lost_per_1000": float((game.points < 0).sum()) * 10 * per_100,
        "longest_rally": longest_rally(track, court),
        **score_changes(seen.score_region, game.points),
        **serves(track),
        "longest_without_ball": int(absences(track.xy)[1].max(initial=0)),
    }


def mean_stats(stats: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([s[key] for s in stats])) for key in stats[0]}


def closed_loop(
    bundle: Bundle,
    steps: int = 1000,
    dreams: int = 4,
    seed: int = 0,
    context: int = 4,
    warmup: int = 60,
    temperature: float = 1.0,
    top_p: float = 1.0,
    compile: bool = False,
) -> tuple[dict, Game, Game]:
    """The real game and `dreams` sampled + 1 greedy dream, each `steps` long from the same
    real start. Returns the stats (per game, the mean of the sampled dreams) and the real and
    first dreamed games (for the video)."""
    start, real = play_real(bundle, steps, context, seed, warmup)
    games = play_dream(
        bundle, start, steps, [False] * dreams + [True], seed, temperature, top_p, compile
    )
    sampled = [game_stats(g) for g in games[:-1]]
    stats = {
        "real": game_stats(real),
        # The floor the tokenizer sets: the real game's frames, encoded and decoded.
        "real_tokenized": game_stats(
            Game(
                reconstruct(
                    bundle.tokenizer,
                    windows(
                        np.concatenate([start.frames, real.frames[:-1]])[None],
                        bundle.tokenizer.context_frames,
                    )[0, len(start.frames) - 1 :],
                    real.actions,
                    real.frames,
                ),
                real.actions,
                real.points,
            )
        ),
        "dream": sampled,
        "dream_mean": mean_stats(sampled),
        "dream_greedy": game_stats(games[-1]),
        "settings": {"steps": steps, "dreams": dreams, "seed": seed, "context": len(start.frames)},
    }
    return stats, real, games[0]
