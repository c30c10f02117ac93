"""What a ball does over time, read off one game's detector track: bounces, teleports,
rallies, score changes; and how well a dream's events match the real game's.

A track is the detector's output over consecutive frames of one game: `xy` (T, 2) ball
centres (col, row), nan where no ball is seen, and `points` (T,) the reward of each step
(+1 won, -1 lost, 0). An event is a row (time, label) of an int array (N, 2); the label
says which paddle, wall or sign (-1 left / top / lost, +1 right / bottom / won).
"""

from dataclasses import dataclass

import numpy as np

from worldmodel.eval.pong_detector import FULL_H, PLAYFIELD_ROWS, score_regions_agree

# The outer fraction of the width counted as "at a paddle" (the paddles stand in the outer
# 10-13%), and of the playfield's height counted as "at a wall".
OUTER = 0.2
# Motion is measured over SPAN steps and moves under MIN_MOVE_PX are skipped: the real ball
# moves 1.5-1.75 px a step across 64 px, about 3 px in two, so the pixel or so a
# reconstruction shifts it by cannot pass for a reversal; it stands still for a step at a
# paddle or a wall.
SPAN, MIN_MOVE_PX = 2, 2.0
# A teleport: the ball seen again within MAX_GAP steps of where it was last seen, but more
# than TELEPORT_PX (per step apart) away. The real ball never moves over 4 px in a step at
# 64x64; after a point it stays hidden for far longer than MAX_GAP steps before the serve.
TELEPORT_PX, MAX_GAP = 10.0, 3
SLACK = 2  # events match within +- this many steps
NO_EVENTS = np.zeros((0, 2), int)


@dataclass(frozen=True)
class Court:
    """Where the paddles and walls are, in pixels of a (height, width) frame."""

    height: int
    width: int

    @property
    def paddle_zone(self) -> tuple[float, float]:
        """A ball left of the first or right of the second x is at a paddle."""
        return OUTER * self.width, (1 - OUTER) * self.width

    @property
    def playfield(self) -> tuple[float, float]:
        """The rows of the top and bottom walls' inner edges."""
        return tuple(r * self.height / FULL_H - 0.5 for r in PLAYFIELD_ROWS)

    @property
    def wall_zone(self) -> tuple[float, float]:
        top, bottom = self.playfield
        return top + OUTER * (bottom - top), bottom - OUTER * (bottom - top)

    def paddle_side(self, x: np.ndarray) -> np.ndarray:
        """-1 at the opponent's (left) paddle, +1 at the player's (right), 0 in mid-field."""
        left, right = self.paddle_zone
        return np.where(x < left, -1, np.where(x >= right, 1, 0))

    def wall_side(self, y: np.ndarray) -> np.ndarray:
        top, bottom = self.wall_zone
        return np.where(y < top, -1, np.where(y >= bottom, 1, 0))


def reversals(moves: np.ndarray, min_move_px: float = MIN_MOVE_PX) -> list[int]:
    """The moves (indices) that reverse the one before, along one track of moves (nan where
    the ball was not seen at both ends). Moves under `min_move_px` are skipped. A lost ball
    starts a new track: a reappearing ball has no direction to reverse."""
    reversing, direction = [], 0.0
    for i, move in enumerate(moves):
        if np.isnan(move):
            direction = 0.0
        elif abs(move) >= min_move_px:
            if direction and np.sign(move) != direction:
                reversing.append(i)
            direction = np.sign(move)
    return reversing


def turns(xy: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the ball reverses along `axis` (0: horizontally, 1: vertically): the times and
    the ball's (col, row) there. A turn at move i (xy[i] -> xy[i + SPAN]) is dated i: the
    ball was at its far point then."""
    moves = xy[SPAN:, axis] - xy[:-SPAN, axis]
    times = np.array(reversals(moves), int)
    return times, xy[times].reshape(-1, 2)


def ball_events(xy: np.ndarray, court: Court) -> dict[str, np.ndarray]:
    """The track's bounces as events: `paddle_bounce` (a horizontal turn at a paddle, label:
    its side), `wall_bounce` (a vertical turn near a wall, label: top -1 / bottom +1) and
    `midfield_reversal` (a horizontal turn anywhere else: the real ball never makes one)."""
    times, at = turns(xy, 0)
    side = court.paddle_side(at[:, 0])
    v_times, v_at = turns(xy, 1)
    wall = court.wall_side(v_at[:, 1])
    return {
        "paddle_bounce": np.stack([times[side != 0], side[side != 0]], 1),
        "wall_bounce": np.stack([v_times[wall != 0], wall[wall != 0]], 1),
        "midfield_reversal": np.stack([times[side == 0], side[side == 0]], 1),
    }


def point_events(points: np.ndarray) -> np.ndarray:
    times = np.flatnonzero(points)
    return np.stack([times, np.sign(points[times]).astype(int)], 1)


def _near_point(points: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Whether a point falls in [start - SLACK, stop + SLACK] (arrays of step indices)."""
    counts = np.concatenate([[0], np.cumsum(points != 0)])
    lo = np.clip(start - SLACK, 0, len(points))
    hi = np.clip(stop + SLACK + 1, 0, len(points))
    return counts[hi] > counts[lo]


def teleports(xy: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Times the ball reappears far from where it just was (see TELEPORT_PX), not at a point
    (a dream may serve at once after one)."""
    seen = np.flatnonzero(~np.isnan(xy[:, 0]))
    before, after = seen[:-1], seen[1:]
    gap = after - before
    jump = np.linalg.norm(xy[after] - xy[before], axis=1)
    far = (gap <= MAX_GAP) & (jump > TELEPORT_PX * gap)
    return after[far & ~_near_point(points, before, after)]


def absences(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs of frames without a ball: (first frame, length) of each."""
    missing = np.concatenate([[False], np.isnan(xy[:, 0]), [False]]).astype(int)
    edges = np.diff(missing)
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return starts, stops - starts


def longest_rally(xy: np.ndarray, points: np.ndarray, court: Court) -> int:
    """The most returns in a row: paddle bounces that alternate sides, so a ball jittering at
    one paddle counts once. A rally ends at a point, a teleport or a ball gone for more
    than MAX_GAP steps."""
    starts, lengths = absences(xy)
    breaks = np.concatenate(
        [np.flatnonzero(points), teleports(xy, points), starts[lengths > MAX_GAP]]
    )
    timeline = sorted(
        [(t, 0, 0) for t in breaks]
        + [(t, 1, side) for t, side in ball_events(xy, court)["paddle_bounce"]]
    )
    best = returns = last_side = 0
    for _, is_bounce, side in timeline:
        if not is_bounce:
            returns = last_side = 0
        elif side != last_side:
            returns, last_side = returns + 1, side
            best = max(best, returns)
    return best


def score_changes(score_region: np.ndarray, points: np.ndarray) -> dict[str, int]:
    """How often the drawn score digits change (`score_region`: the detector's (T, h, w)),
    and how many of those changes are more than SLACK steps away from any point: 0 in a
    game whose digits change only when someone scores (the real one)."""
    changed = 1 + np.flatnonzero(~score_regions_agree(score_region[1:], score_region[:-1]))
    off_point = ~_near_point(points, changed, changed)
    return {"score_changes": int(len(changed)), "score_changes_off_point": int(off_point.sum())}


def match(real: np.ndarray, predicted: np.ndarray, slack: int = SLACK) -> int:
    """How many events pair up one to one: same label, times at most `slack` apart (closest
    pairs first)."""
    if not len(real) or not len(predicted):
        return 0
    dt = np.abs(real[:, None, 0] - predicted[None, :, 0])
    ok = (dt <= slack) & (real[:, None, 1] == predicted[None, :, 1])
    used_real, used_predicted, matched = set(), set(), 0
    for i, j in sorted(zip(*np.nonzero(ok), strict=True), key=lambda ij: dt[ij]):
        if i not in used_real and j not in used_predicted:
            used_real.add(i)
            used_predicted.add(j)
            matched += 1
    return matched


def chance(predicted: list[np.ndarray], length: int, slack: int = SLACK) -> float:
    """The recall a real event at a random time would get: the fraction of (2 * slack + 1)-
    step windows, over all games of `length` steps, that hold any predicted event. A dream
    that reverses all the time scores high here, so its recall means little."""
    hits = 0
    for events in predicted:
        has = np.zeros(length, int)
        has[events[:, 0]] = 1
        counts = np.concatenate([[0], np.cumsum(has)])
        t = np.arange(length)
        hits += int(
            (counts[np.minimum(t + slack + 1, length)] > counts[np.maximum(t - slack, 0)]).sum()
        )
    return hits / (len(predicted) * length) if predicted else float("nan")


def event_scores(real: list[np.ndarray], predicted: list[np.ndarray], length: int) -> dict:
    """Recall and precision of one kind of event over games (lists of (N, 2) events, one per
    game of `length` steps), with the counts they rest on and the chance level of recall."""
    matched = sum(match(r, p) for r, p in zip(real, predicted, strict=True))
    n_real, n_predicted = sum(map(len, real)), sum(map(len, predicted))
    return {
        "real": n_real,
        "predicted": n_predicted,
        "matched": matched,
        "recall": matched / n_real if n_real else float("nan"),
        "precision": matched / n_predicted if n_predicted else float("nan"),
        "chance": chance(predicted, length),
    }
