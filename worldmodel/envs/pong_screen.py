"""Where things are on the Pong screen: the full-frame layout, the same geometry at any
frame size (as the area resize maps it), and where the emulator RAM says the objects are.

Full-frame (210x160) layout of ALE Pong, measured on real frames from `AtariBatch`:

* background (144, 72, 17) everywhere except what follows;
* score digits in rows 1-20 (opponent orange on the left, player green on the right; the
  top wall starts at row 24), drawn from the 3x5 font `DIGITS` in 4x4-pixel cells (see
  `score_ink`); row 0, columns 0-7 hold the black HMOVE bar;
* walls (236, 236, 236): rows 24-33 and 194-209, so the playfield is rows 34-193;
* opponent paddle (213, 130, 74) in columns 16-19, player paddle (92, 186, 92) in columns
  140-143, both 16 rows tall and hidden where they overlap a wall or the score area;
* ball (236, 236, 236), 2 columns x 4 rows, also hidden behind the walls.

The first frame of every episode (straight after reset) uses a different palette (olive
background, blue player paddle); the detector does not handle it.
"""

import functools
from dataclasses import dataclass

import numpy as np

from worldmodel.envs import pong_ram
from worldmodel.envs.resize import area_weights

FULL_H, FULL_W = 210, 160
BACKGROUND = np.array([144, 72, 17], np.float32)
WHITE = np.array([236, 236, 236], np.float32)  # ball and walls
PLAYER_COLOUR = np.array([92, 186, 92], np.float32)
OPPONENT_COLOUR = np.array([213, 130, 74], np.float32)
SCORE_ROWS = (0, 24)  # [start, stop) full-frame rows above the top wall
PLAYFIELD_ROWS = (34, 194)  # between the walls; the ball and paddles are visible only here
PLAYER_COLS = (140, 144)
OPPONENT_COLS = (16, 20)
PADDLE_HEIGHT = 16
BALL_H, BALL_W = 4, 2

# The score font, as the emulator draws it (read off real frames of the opponent's scores
# 0-20 and the player's 0-13; tests/test_score_slot.py checks it against play).
DIGITS = {
    0: ("###", "#.#", "#.#", "#.#", "###"),
    1: (".#.", ".#.", ".#.", ".#.", ".#."),
    2: ("###", "..#", "###", "#..", "###"),
    3: ("###", "..#", ".##", "..#", "###"),
    4: ("#.#", "#.#", "###", "..#", "..#"),
    5: ("###", "#..", "###", "..#", "###"),
    6: ("#..", "#..", "###", "#.#", "###"),
    7: ("###", "..#", "..#", "..#", "..#"),
    8: ("###", "#.#", "###", "#.#", "###"),
    9: ("###", "#.#", "###", "..#", "..#"),
}
DIGIT_CELL = 4  # full-frame pixels per font cell, both ways
DIGIT_TOP = 1
UNITS_LEFT = {"opponent": 36, "player": 116}  # the units digit's left column
TENS_SHIFT = 16  # the tens digit (none below 10) sits this many columns left of the units
MAX_SCORE = 21  # a game ends when a side reaches it
HMOVE_BAR = (0, slice(0, 8))  # the black bar's full-frame pixels (row 0, columns 0-7)

# RAM addresses and their offsets to full-frame pixels, calibrated on 8,000 frames of
# TrackerPolicy play (2 seeds x 8 envs x 500 steps) by matching each object's exact
# colour in `full_frames` with the RAM read after the same step:
# * ball: left column = ram[49] - 49 (in every frame); top row = ram[54] - 14 (93.5%; in
#   5% it is drawn one row higher, 0.3 px at 64x64). ram[54] == 0 means no ball; a ball
#   behind a wall, or left of column 0 after a point, is not drawn.
# * opponent paddle: top row = ram[50] - 15 (in every frame).
# * player paddle: drawn on even rows only: top row = ram[51] - 13 rounded down to even
#   (in every frame).
BALL_X_OFFSET, BALL_Y_OFFSET = -49, -14
OPPONENT_TOP_OFFSET, PLAYER_TOP_OFFSET = -15, -13
# A paddle counts as visible when at least this many of its full-frame rows are in the
# playfield; the detector's threshold (PADDLE_MASS_FRACTION) sits between one and two rows.
MIN_PADDLE_ROWS = 2


def to_pixels(full: np.ndarray, n_full: int, n: int) -> np.ndarray:
    """Continuous full-frame coordinate -> pixel coordinate at size n (centres at k)."""
    return full * (n / n_full) - 0.5


@dataclass(frozen=True)
class Geometry:
    """Where things are at one frame size (derived from the full-frame layout)."""

    height: int
    width: int
    ball_rows: np.ndarray  # (H,) bool: rows the ball can be seen in
    score_rows: int  # rows [0, score_rows) lie entirely above the top wall
    paddle_cols: dict[str, np.ndarray]  # side -> column indices the paddle covers
    band_cols: dict[str, np.ndarray]  # side -> paddle columns +- 1 (reconstruction blur)
    band_cover: dict[str, np.ndarray]  # side -> fraction of each band column the paddle fills
    paddle_row_mass: float  # colour mass of one full-frame paddle row at this size
    paddle_window: int  # rows spanned by a whole paddle, + 1
    ball_window: tuple[int, int]  # (rows, cols) spanned by the ball at any sub-pixel offset


@functools.lru_cache(maxsize=8)
def geometry(height: int, width: int) -> Geometry:
    rows = area_weights(FULL_H, height)  # (H, 210): coverage of full rows by each row
    cols = area_weights(FULL_W, width)
    ball_rows = rows[:, slice(*PLAYFIELD_ROWS)].sum(1) > 0
    score_rows = int(np.argmin(rows[:, slice(*SCORE_ROWS)].sum(1) > 0.999))

    def columns(span: tuple[int, int]) -> np.ndarray:
        return np.flatnonzero(cols[:, slice(*span)].sum(1) > 0)

    paddle_cols = {"player": columns(PLAYER_COLS), "opponent": columns(OPPONENT_COLS)}
    band_cols = {
        side: np.arange(max(c[0] - 1, 0), min(c[-1] + 2, width)) for side, c in paddle_cols.items()
    }
    spans = {"player": PLAYER_COLS, "opponent": OPPONENT_COLS}
    band_cover = {
        side: cols[band][:, slice(*spans[side])].sum(1) for side, band in band_cols.items()
    }
    row_scale, col_scale = FULL_H / height, FULL_W / width
    return Geometry(
        height=height,
        width=width,
        ball_rows=ball_rows,
        score_rows=score_rows,
        paddle_cols=paddle_cols,
        band_cols=band_cols,
        band_cover=band_cover,
        # A paddle row is 4 full columns wide, all inside `paddle_cols`.
        paddle_row_mass=(PLAYER_COLS[1] - PLAYER_COLS[0]) / (row_scale * col_scale),
        paddle_window=int(np.ceil(PADDLE_HEIGHT / row_scale)) + 1,
        ball_window=(int(np.ceil(BALL_H / row_scale)) + 1, int(np.ceil(BALL_W / col_scale)) + 1),
    )


def score_rows(opponent: int, player: int) -> np.ndarray:
    """(SCORE_ROWS[1], FULL_W, 3) float32: the full-frame rows above the top wall showing
    this score, as the emulator draws them (after an episode's first frame)."""
    rows = np.broadcast_to(BACKGROUND, (SCORE_ROWS[1], FULL_W, 3)).copy()
    rows[HMOVE_BAR] = 0
    rows[score_ink("opponent", opponent)] = OPPONENT_COLOUR
    rows[score_ink("player", player)] = PLAYER_COLOUR
    return rows


def score_ink(side: str, score: int) -> np.ndarray:
    """(SCORE_ROWS[1], FULL_W) bool: the full-frame pixels of one side's score digits."""
    ink = np.zeros((SCORE_ROWS[1], FULL_W), bool)
    cell = np.ones((DIGIT_CELL, DIGIT_CELL), bool)
    digits = [(score % 10, UNITS_LEFT[side])]
    if score >= 10:
        digits.append((score // 10, UNITS_LEFT[side] - TENS_SHIFT))
    for digit, left in digits:
        glyph = np.kron(np.array([[c == "#" for c in row] for row in DIGITS[digit]]), cell)
        ink[DIGIT_TOP : DIGIT_TOP + glyph.shape[0], left : left + glyph.shape[1]] = glyph
    return ink


def _visible_centre(
    start: np.ndarray, stop: np.ndarray, lo: int, hi: int
) -> tuple[np.ndarray, np.ndarray]:
    """Centre of [start, stop) clipped to [lo, hi), and the visible length."""
    start, stop = np.clip(start, lo, hi), np.clip(stop, lo, hi)
    return 0.5 * (start + stop), stop - start


def ram_to_pixels(ram: np.ndarray, frame_size: int | tuple[int, int] = 64) -> dict:
    """Where the RAM says the objects are, in the detector's pixel coordinates.

    ram: (B, 128) read after the step that rendered the frame (`AtariBatch.ram`). Returns
    ball_present (B,) bool, ball_xy (B, 2) (nan when absent), player_y and opponent_y (B,)
    centre rows of the visible part (nan when fewer than MIN_PADDLE_ROWS rows show). Objects
    behind a wall count as absent, as in the frame. Offsets: see the RAM_* constants.
    """
    height, width = (frame_size, frame_size) if np.isscalar(frame_size) else frame_size
    ram = np.asarray(ram).astype(np.int64)
    ball_x, ball_y = ram[:, pong_ram.BALL_X], ram[:, pong_ram.BALL_Y]
    left = ball_x + BALL_X_OFFSET
    top = ball_y + BALL_Y_OFFSET
    cx, w = _visible_centre(left, left + BALL_W, 0, FULL_W)
    cy, h = _visible_centre(top, top + BALL_H, *PLAYFIELD_ROWS)
    present = (ball_y > 0) & (w > 0) & (h > 0)
    ball_xy = np.stack([to_pixels(cx, FULL_W, width), to_pixels(cy, FULL_H, height)], 1)
    ball_xy[~present] = np.nan

    paddles = {}
    tops = {
        "player": (ram[:, pong_ram.PLAYER_Y] + PLAYER_TOP_OFFSET) // 2 * 2,
        "opponent": ram[:, pong_ram.OPPONENT_Y] + OPPONENT_TOP_OFFSET,
    }
    for side, paddle_top in tops.items():
        centre, rows = _visible_centre(paddle_top, paddle_top + PADDLE_HEIGHT, *PLAYFIELD_ROWS)
        paddles[side] = np.where(rows >= MIN_PADDLE_ROWS, to_pixels(centre, FULL_H, height), np.nan)
    return {
        "ball_present": present,
        "ball_xy": ball_xy,
        "player_y": paddles["player"],
        "opponent_y": paddles["opponent"],
    }
