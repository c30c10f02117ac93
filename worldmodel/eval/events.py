"""What a ball does over time, read off one game's detector track: bounces, teleports,
rallies, score changes; and how well a dream's events match the real game's.

A `Track` is what the detector saw over consecutive frames of one game, with the reward of
each step. An event is a row (time, label) of an int array (N, 2); the label says which
paddle, wall or sign (-1 left / top / lost, +1 right / bottom / won).
"""

from dataclasses import dataclass

import numpy as np

from worldmodel.envs.pong_detector import PongObjects, score_regions_agree
from worldmodel.envs.pong_screen import BALL_H, FULL_H, PADDLE_HEIGHT, PLAYFIELD_ROWS

# The outer fraction of the width counted as "at a paddle" (the paddles stand in the outer
# 10-13%), and of the playfield's height counted as "at a wall".
OUTER = 0.2
# Motion is measured over SPAN steps and moves under MIN_MOVE_PX are skipped: the real ball
# moves 1.5-1.75 px a step across 64 px, about 3 px in two, so the pixel or so a
# reconstruction shifts it by cannot pass for a reversal; it stands still for a step at a
# paddle or a wall.
SPAN, MIN_MOVE_PX = 2, 2.0
# A teleport: the ball seen more than TELEPORT_PX away from where it was last seen, plus
# BALL_SPEED_PX for each step it was missing in between, with no point near. The real ball
# moves at most 4.02 px a step at 64x64 (RAM, 12,000 steps of tracker play); it vanishes
# only after a point, and the serve that brings it back is not a teleport.
TELEPORT_PX, BALL_SPEED_PX = 10.0, 4.1
# A ball gone for more than MAX_GAP steps ends a rally, and its return is a serve.
MAX_GAP = 3
SLACK = 2  # events match within +- this many steps


@dataclass(frozen=True)
class Track:
    """One game's detector output: ball centres `xy` (T, 2) (col, row; nan where no ball),
    paddle centre rows (T,) (nan where hidden) and `points` (T,), each step's reward."""

    xy: np.ndarray
    player_y: np.ndarray
    opponent_y: np.ndarray
    points: np.ndarray

    @classmethod
    def of(cls, objects: PongObjects, points: np.ndarray) -> "Track":
        return cls(objects.ball_xy, objects.player_y, objects.opponent_y, np.asarray(points))

    def __len__(self) -> int:
        return len(self.points)


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

    @property
    def paddle_reach(self) -> float:
        """How far (rows) the ball's centre can be from a paddle's centre while touching it,
        plus 2 px for the detector and the paddle's own move in the step."""
        return (PADDLE_HEIGHT + BALL_H) / 2 * self.height / FULL_H + 2.0

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


def ball_events(track: Track, court: Court) -> dict[str, np.ndarray]:
    """The track's turns as events: `paddle_bounce` (a horizontal turn at a paddle, within
    reach of the paddle drawn there; label: its side), `edge_reversal` (every horizontal
    turn in a paddle's zone, paddle or not), `midfield_reversal` (a horizontal turn anywhere
    else: the real ball never makes one) and `wall_bounce` (a vertical turn near a wall,
    label: top -1 / bottom +1)."""
    times, at = turns(track.xy, 0)
    side = court.paddle_side(at[:, 0])
    paddle = np.where(side > 0, track.player_y[times], track.opponent_y[times])
    reached = np.abs(paddle - at[:, 1]) <= court.paddle_reach  # False where the paddle is hidden
    v_times, v_at = turns(track.xy, 1)
    wall = court.wall_side(v_at[:, 1])

    def events(mask: np.ndarray, t: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return np.stack([t[mask], labels[mask]], 1)

    return {
        "paddle_bounce": events((side != 0) & reached, times, side),
        "edge_reversal": events(side != 0, times, side),
        "midfield_reversal": events(side == 0, times, side),
        "wall_bounce": events(wall != 0, v_times, wall),
    }


def point_events(points: np.ndarray) -> np.ndarray:
    """The steps with a reward, labelled with its sign."""
    times = np.flatnonzero(points)
    return np.stack([times, np.sign(points[times]).astype(int)], 1)


def _near(marks: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Whether any step of [start - SLACK, stop + SLACK] is marked (nonzero) in `marks`."""
    counts = np.concatenate([[0], np.cumsum(marks != 0)])
    lo = np.clip(start - SLACK, 0, len(marks))
    hi = np.clip(stop + SLACK + 1, 0, len(marks))
    return counts[hi] > counts[lo]


def teleports(track: Track) -> np.ndarray:
    """Times the ball is seen far from where it was last seen (see TELEPORT_PX), with no
    point near (a serve follows one)."""
    xy = track.xy
    seen = np.flatnonzero(~np.isnan(xy[:, 0]))
    before, after = seen[:-1], seen[1:]
    jump = np.linalg.norm(xy[after] - xy[before], axis=1)
    far = jump > TELEPORT_PX + BALL_SPEED_PX * (after - before - 1)
    return after[far & ~_near(track.points, before, after)]


def absences(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs of frames without a ball: (first frame, length) of each."""
    missing = np.concatenate([[False], np.isnan(xy[:, 0]), [False]]).astype(int)
    edges = np.diff(missing)
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return starts, stops - starts


def serves(track: Track) -> dict[str, int]:
    """Returns of the ball after more than MAX_GAP steps away (not at the game's end), and
    how many of them no point came near (the real game serves only after one)."""
    starts, lengths = absences(track.xy)
    back = (lengths > MAX_GAP) & (starts + lengths < len(track))
    stops = starts + lengths
    unearned = back & ~_near(track.points, starts - 1, stops)
    return {"serves": int(back.sum()), "serves_without_point": int(unearned.sum())}


def longest_rally(track: Track, court: Court) -> int:
    """The most returns in a row: paddle bounces that alternate sides, so a ball jittering at
    one paddle counts once. A rally ends at a point, a teleport or a ball gone for more
    than MAX_GAP steps."""
    starts, lengths = absences(track.xy)
    breaks = np.concatenate(
        [np.flatnonzero(track.points), teleports(track), starts[lengths > MAX_GAP]]
    )
    timeline = sorted(
        [(t, 0, 0) for t in breaks]
        + [(t, 1, side) for t, side in ball_events(track, court)["paddle_bounce"]]
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
    how many of those changes are more than SLACK steps from any point, and how many points
    leave the digits as they were: 0 and 0 in a game whose digits change exactly when
    someone scores (the real one)."""
    changed = 1 + np.flatnonzero(~score_regions_agree(score_region[1:], score_region[:-1]))
    off_point = ~_near(points, changed, changed)
    change_steps = np.zeros(len(points), int)
    change_steps[changed] = 1
    at_point = np.flatnonzero(points)
    silent = ~_near(change_steps, at_point, at_point)
    return {
        "score_changes": int(len(changed)),
        "score_changes_off_point": int(off_point.sum()),
        "points_without_score_change": int(silent.sum()),
    }


def match(real: np.ndarray, predicted: np.ndarray, slack: int = SLACK) -> int:
    """The most events that pair up one to one: same label, times at most `slack` apart.
    Per label, in time order, each real event takes the earliest predicted one still free
    within its window: with windows of one width this pairs up as many as any matching."""
    matched = 0
    for label in np.intersect1d(real[:, 1], predicted[:, 1]):
        times = np.sort(predicted[predicted[:, 1] == label, 0])
        free = 0
        for t in np.sort(real[real[:, 1] == label, 0]):
            while free < len(times) and times[free] < t - slack:
                free += 1
            if free < len(times) and times[free] <= t + slack:
                matched += 1
                free += 1
    return matched


def chance(predicted: list[np.ndarray], length: int, slack: int = SLACK) -> float:
    """The recall a real event at a random time would get: the fraction of (2 * slack + 1)-
    step windows, over all games of `length` steps, that hold any predicted event (of any
    label, so an upper bound). A dream that reverses all the time scores high here, so its
    recall means little."""
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
