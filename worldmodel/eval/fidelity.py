"""Does the dream follow the real game? Roll the model forward with recorded actions and
compare what it imagines with what really happened, step by step.

Baselines in the same table: "copy the last real frame" (what a model that learned
nothing about motion would score) and the tokenizer's reconstruction of the real frames
(the ceiling: the world model cannot be more faithful than its tokenizer).
"""

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from worldmodel.bundle import AnyTokenizer, Bundle
from worldmodel.data.episode import Episode
from worldmodel.engine import LearnedGame
from worldmodel.envs.pong_detector import PongObjects, detect
from worldmodel.eval.events import (
    MIN_MOVE_PX,
    SPAN,
    Court,
    Track,
    ball_events,
    event_scores,
    point_events,
    reversals,
)
from worldmodel.frames import to_uint8_frames, windows


@dataclass
class Rollouts:
    real: np.ndarray  # (B, H, h, w, 3) what happened
    imagined: np.ndarray  # (B, H, h, w, 3) what the model dreamed for the same actions
    copy_last: np.ndarray  # (B, H, h, w, 3) the last context frame, repeated
    reconstructed: np.ndarray  # (B, H, h, w, 3) tokenizer round trip of the real frames
    real_rewards: np.ndarray  # (B, H)
    imagined_rewards: np.ndarray  # (B, H)


def pick_starts(episodes: list[Episode], context: int, horizon: int, n: int) -> list[tuple]:
    """n (episode, start) pairs spread evenly over the episodes (skipping the reset frame)."""
    spans = [
        (i, t) for i, e in enumerate(episodes) for t in range(1, len(e) - context - horizon + 1)
    ]
    if not spans:
        raise ValueError(
            f"held-out episodes are too short for context {context} + horizon {horizon}"
        )
    return [spans[k] for k in np.linspace(0, len(spans) - 1, n).astype(int)]


@torch.inference_mode()
def reconstruct(
    tokenizer: AnyTokenizer, previous: np.ndarray, actions: np.ndarray, frames: np.ndarray
) -> np.ndarray:
    """The tokenizer's round trip of (N, h, w, 3) uint8 frames, each given the real frames
    before it (N, n, h, w, 3) and the action between (the world model's ceiling)."""
    device = tokenizer.quantizer.codebook.weight.device
    parts = [
        torch.from_numpy(np.ascontiguousarray(a)).to(device).split(256)
        for a in (previous, actions, frames)
    ]
    return torch.cat(
        [
            to_uint8_frames(tokenizer.round_trip(p, a, f)).cpu()
            for p, a, f in zip(*parts, strict=True)
        ]
    ).numpy()


@torch.inference_mode()
def roll_out(
    bundle: Bundle,
    episodes: list[Episode],
    context: int,
    horizon: int,
    n: int,
    temperature: float = 1.0,
    seed: int = 0,
    top_p: float = 1.0,
    greedy: bool = False,
    compile: bool = False,
) -> Rollouts:
    starts = pick_starts(episodes, context, horizon, n)
    window = [(episodes[i], t) for i, t in starts]
    frames = np.stack([e.frames[t : t + context + horizon] for e, t in window])
    actions = np.stack([e.actions[t : t + context + horizon] for e, t in window])
    rewards = np.stack([e.rewards[t : t + context + horizon] for e, t in window])

    game = LearnedGame(
        bundle.tokenizer,
        bundle.world_model,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        greedy=greedy,
        compile=compile,
    )
    device = game.device
    game.reset(
        torch.from_numpy(frames[:, :context]).to(device),
        torch.from_numpy(actions[:, : context - 1]).to(device),
    )
    imagined, imagined_rewards = [], []
    for h in range(horizon):
        frame, reward, _ = game.step(torch.from_numpy(actions[:, context - 1 + h]).to(device))
        imagined.append(frame.cpu().numpy())
        imagined_rewards.append(reward.cpu().numpy())

    real = frames[:, context:]
    before = windows(frames, bundle.tokenizer.context_frames)[:, context - 1 : -1]
    reconstructed = reconstruct(
        bundle.tokenizer,
        before.reshape(-1, *before.shape[2:]),
        actions[:, context - 1 : -1].reshape(-1),
        real.reshape(-1, *real.shape[2:]),
    )
    return Rollouts(
        real=real,
        imagined=np.stack(imagined, axis=1),
        copy_last=np.repeat(frames[:, context - 1 : context], horizon, axis=1),
        reconstructed=reconstructed.reshape(real.shape),
        # rewards[t] follows action t: the reward for arriving in real frame context + h
        real_rewards=rewards[:, context - 1 : context - 1 + horizon],
        imagined_rewards=np.stack(imagined_rewards, axis=1),
    )


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    """Mean over the rollouts where the object was seen (nan where it never was)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


def detect_rollouts(frames: np.ndarray) -> PongObjects:
    """The detector over rollouts (B, H, h, w, 3): objects of all B*H frames, flat."""
    return detect(frames.reshape(-1, *frames.shape[2:]))


def ball_in_play(real: PongObjects, last_context: np.ndarray) -> np.ndarray:
    """(B, H): whether the real ball has been in play since the last context frame (B, h, w,
    3) up to each step: seen there and in every real frame since. Such a ball's flight follows
    from the context; a serve's step does not (Pong serves at random), nor does a ball after
    a point."""
    before = detect(last_context).ball_present
    seen = np.concatenate([before[:, None], real.ball_present.reshape(len(before), -1)], 1)
    return np.logical_and.accumulate(seen, axis=1)[:, 1:]


def per_step_metrics(
    real: np.ndarray,
    other: np.ndarray,
    objects: tuple[PongObjects, PongObjects] | None = None,
    in_play: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per horizon step (averaged over rollouts): detector errors and PSNR. `objects`: the
    two arrays' detect_rollouts, where the caller has them already. With `in_play` (see
    ball_in_play), also the ball error over the rollouts whose real ball was in play."""
    b, h = real.shape[:2]
    a, o = (detect_rollouts(real), detect_rollouts(other)) if objects is None else objects

    def grid(x: np.ndarray) -> np.ndarray:
        return x.reshape(b, h, *x.shape[1:])

    # Ball error where the real frame has a ball. A missing ball in the other frame counts
    # as the frame's diagonal (the largest possible error), so dropping the ball never pays.
    worst = float(np.hypot(*real.shape[2:4]))
    distance = np.linalg.norm(grid(a.ball_xy - o.ball_xy), axis=-1)
    ball_err = np.where(
        grid(a.ball_present), np.where(grid(o.ball_present), distance, worst), np.nan
    )
    diff = (real.astype(np.float32) - other.astype(np.float32)) / 255
    mse = (diff**2).reshape(b, h, -1).mean(-1)
    metrics = {
        "player_paddle_err_px": _nanmean(grid(np.abs(a.player_y - o.player_y)), 0),
        "opponent_paddle_err_px": _nanmean(grid(np.abs(a.opponent_y - o.opponent_y)), 0),
        "ball_err_px": _nanmean(ball_err, 0),
        "ball_present_agreement": (grid(a.ball_present) == grid(o.ball_present)).mean(0),
        "psnr_db": (10 * np.log10(1.0 / np.maximum(mse, 1e-10))).mean(0),
    }
    if in_play is not None:
        metrics["ball_in_play_err_px"] = _nanmean(np.where(in_play, ball_err, np.nan), 0)
    return metrics


def ball_motion(
    frames: np.ndarray,
    objects: PongObjects | None = None,
    span: int = SPAN,
    min_move_px: float = MIN_MOVE_PX,
) -> dict[str, float | list[float]]:
    """Does the ball behave like a Pong ball? Over rollouts (B, H, h, w, 3), each judged on
    its own track: how often a ball is seen, how often a seen ball moved, and how often its
    motion reverses (per 100 steps): horizontally where a paddle returns it, vertically where
    it bounces off a wall. A dream that keeps the ball still or lets it drift never
    reverses, one that jitters reverses all the time: compare with the real frames. Reversals
    in the middle half of the frame along their axis are counted apart: the real ball turns
    horizontally only at the paddles, so there they are a dream's jitter; vertically a paddle
    may also turn it anywhere (compare with the real count).

    Motion is measured over `span` steps, skipping moves under `min_move_px` (why: see
    events.SPAN). `objects`: detect_rollouts(frames), where the caller has it.

    Also where balls get lost (seen, then not), per 100 steps, by the quarter of the frame's
    width they were last seen in: the real ball leaves only past a paddle (a point), a dream's
    may vanish anywhere, e.g. where it meets a paddle."""
    b, h, height, width = frames.shape[:4]
    if objects is None:
        objects = detect_rollouts(frames)
    xy = objects.ball_xy.reshape(b, h, 2)
    moves = xy[:, span:] - xy[:, :-span]  # nan unless seen at both ends
    seen = ~np.isnan(moves[..., 0])
    moving = (np.abs(moves[seen]) >= min_move_px).any(-1)
    steps = b * h / 100
    present = objects.ball_present.reshape(b, h)
    lost = present[:, :-1] & ~present[:, 1:]
    quarter = np.clip(xy[:, :-1, 0][lost] * 4 // width, 0, 3).astype(int)
    result = {
        "ball_lost_per_100_by_quarter": (np.bincount(quarter, minlength=4) / steps).tolist(),
        "ball_seen": float(objects.ball_present.mean()),
        "ball_moving": float(moving.mean()) if seen.any() else 0.0,
    }
    for i, (axis, size) in enumerate((("horizontal", width), ("vertical", height))):
        turns = [xy[r, t, i] for r in range(b) for t in reversals(moves[r, :, i], min_move_px)]
        middle = [size / 4 <= position < 3 * size / 4 for position in turns]
        result[f"{axis}_reversals_per_100"] = len(turns) / steps
        result[f"{axis}_reversals_middle_per_100"] = sum(middle) / steps
    return result


def reward_events(real: np.ndarray, imagined: np.ndarray) -> dict[str, float]:
    """Points scored either way (rewards (B, H)): how many the model predicted, and how many
    it got right (one to one, same sign within events.SLACK steps)."""
    real_points = [point_events(r) for r in real]
    scores = event_scores(real_points, [point_events(i) for i in imagined], real.shape[1])
    return {
        "real_points": scores["real"],
        "predicted_points": scores["predicted"],
        "points_matched": scores["matched"],
        "recall": scores["recall"],
        "precision": scores["precision"],
    }


EVENT_KINDS = ("paddle_bounce", "wall_bounce", "point")


def open_loop_events(
    real: tuple[PongObjects, np.ndarray], other: tuple[PongObjects, np.ndarray], court: Court
) -> dict[str, dict]:
    """Per kind of event (EVENT_KINDS): how well `other`'s rollouts (the detector's objects
    of all B*H frames, rewards (B, H)) find the real rollouts' events: recall, precision,
    the counts and the chance level (events.event_scores)."""

    def per_game(objects: PongObjects, rewards: np.ndarray) -> list[dict[str, np.ndarray]]:
        b, h = rewards.shape
        return [
            {
                **ball_events(Track.of(objects[i * h : (i + 1) * h], rewards[i]), court),
                "point": point_events(rewards[i]),
            }
            for i in range(b)
        ]

    real_events, other_events = per_game(*real), per_game(*other)
    length = real[1].shape[1]
    return {
        kind: event_scores([e[kind] for e in real_events], [e[kind] for e in other_events], length)
        for kind in EVENT_KINDS
    }
