"""Find the ball, both paddles and the score in (downscaled) Pong frames, by colour.

Used to score a world model's frames against real ones (and real frames against the
emulator RAM): is the ball where it should be, are the paddles at the right height, does
the score read the same. The screen layout it relies on is `pong_screen`.

After the area resize to 64x64 a screen pixel averages 3.28 x 2.5 full-frame pixels, so the
2x4 ball never fills a pixel: its brightest pixel carries between 11-12% (worst) and
54% (median) of the ball's full contrast. The ball is therefore found by its deviation from the
background along the white direction, not by looking for white pixels. All geometry below
is derived from the input frame size with the same area weights the resize uses.
"""

from dataclasses import dataclass, fields

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from worldmodel.envs.pong_screen import (
    BACKGROUND,
    MIN_PADDLE_ROWS,
    OPPONENT_COLOUR,
    PLAYER_COLOUR,
    WHITE,
    Geometry,
    geometry,
)

# Ball threshold, in units of "fraction of the ball's full contrast" (white minus
# background) carried by its brightest pixel. Measured on 3,700 real 64x64 frames with a
# ball: >= 0.12 (a ball clipped to one row by a wall; whole balls >= 0.25), >= 0.36 in 90%
# of frames, 0.55 median. Gaussian noise of std 2 (3) per channel gives a per-pixel std of
# 0.0066 (0.0098) and a maximum of 0.035 (0.051) over ~1e6 pixels. The threshold sits
# between that noise floor and the faintest real ball, so a ball whose brightest pixel
# carries >= 10% is found (tested on real balls scaled down to 10% and 8%).
# The ball's position comes from its mass (sum over the window that holds it all), which is
# 0.975 for a whole ball wherever it falls between pixels: a better matched filter than
# the peak, but clipped balls (mass 0.245) rule it out as the presence test.
BALL_PEAK_THRESHOLD = 0.07
# A blob of ball evidence (8-connected pixels over BALL_PEAK_THRESHOLD) counts as a ball
# when it holds at least this much mass: the resized ball is one blob wherever it falls
# between pixels (its coverage falls off monotonically around it), so two such blobs are a
# ghost. Measured on 600 frames of closed-loop play: real balls hold 0.97 (median), >= 0.49
# in 99% of frames, 0.18 at the least (clipped by a wall), and no frame has a second blob;
# the shipped tokenizer's reconstructions leave faint smudges beside the ball (median 0.16,
# 90% <= 0.31). So a ghost must carry a third of a whole ball's ink: 2% of reconstructed
# frames have one.
BLOB_MIN_MASS = 0.3
# Paddle colour mass (pixels' worth of paddle, summed over the best paddle-length window)
# needed to call a paddle visible, as a fraction of the mass of MIN_PADDLE_ROWS full-frame
# rows: one row is 0.49 at 64x64 and two are 0.98, so 0.75 sits halfway between one and
# two. For a hidden paddle, noise of std 2 (3) reaches at most 0.15 (0.20).
PADDLE_MASS_FRACTION = 0.75
# Score regions agree when no 2x2 block's digit ink differs by more than this (pixels'
# worth of ink). At 64x64 the smallest change of one side's score (all digits 0-9, one and
# two digits) moves >= 1.87; noise of std 2 (3, 5) moves at most 0.21 (0.30, 0.50).
SCORE_TOLERANCE = 0.8


@dataclass
class PongObjects:
    """What the detector sees in a batch of frames (one entry per frame)."""

    ball_present: np.ndarray  # (B,) bool
    ball_xy: np.ndarray  # (B, 2) float, (col, row) pixel coords, pixel centres at integers
    player_y: np.ndarray  # (B,) float, centre row of the visible part, nan when hidden
    opponent_y: np.ndarray  # (B,) float, same for the left paddle
    score_region: np.ndarray  # (B, h, W) float32 digit ink (pixels' worth of digit colour)
    ball_blobs: np.ndarray  # (B,) int, separate ball-like blobs (> 1: a ghost ball)
    paddle_ghost: np.ndarray  # (B,) bool, a second paddle in either paddle's columns

    def __getitem__(self, index: np.ndarray | slice) -> "PongObjects":
        """The objects of some of the frames (a mask, indices or a slice)."""
        return PongObjects(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


def _unmix_row(colours: list[np.ndarray], which: int) -> np.ndarray:
    """Row of the least-squares unmixing of (pixel - background) into `colours`."""
    basis = np.stack([c - BACKGROUND for c in colours], axis=1)  # (3, k)
    return np.linalg.pinv(basis)[which].astype(np.float32)


_SIDES = {"player": PLAYER_COLOUR, "opponent": OPPONENT_COLOUR}
# Projection onto the white direction: the least noisy estimate of "how much ball" where
# only background and ball can be (noise std is divided by |white - background| = 289).
_WHITE_PROJECTION = ((WHITE - BACKGROUND) / np.sum((WHITE - BACKGROUND) ** 2)).astype(np.float32)
# Near a paddle a pixel mixes background, paddle colour and (maybe) ball: unmix both.
# The paddle colours project 0.34-0.36 onto white, so plain projection would see balls there.
_WHITE_UNMIX = {side: _unmix_row([WHITE, colour], 0) for side, colour in _SIDES.items()}
# Fraction of a pixel where the ball replaces paddle colour (measured along white - paddle).
_WHITE_OVER = {
    side: ((WHITE - c) / np.sum((WHITE - c) ** 2)).astype(np.float32) for side, c in _SIDES.items()
}
_PADDLE_UNMIX = {side: _unmix_row([WHITE, colour], 1) for side, colour in _SIDES.items()}
# Projection onto a paddle (or its score digits') colour: the fraction of a pixel it fills.
_COLOUR_PROJECTION = {
    side: ((c - BACKGROUND) / np.sum((c - BACKGROUND) ** 2)).astype(np.float32)
    for side, c in _SIDES.items()
}


def _window_argmax(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start and sum of the best `window`-long run along the last axis of (B, N), and the
    sum of the best run that does not overlap it (a second object)."""
    sums = sliding_window_view(values, window, axis=1).sum(-1)
    start = sums.argmax(1)
    overlaps = np.abs(np.arange(sums.shape[1])[None, :] - start[:, None]) < window
    second = np.where(overlaps, -np.inf, sums).max(1, initial=-np.inf)
    return start, sums[np.arange(len(values)), start], second


def _find_paddle(
    delta: np.ndarray, geo: Geometry, side: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: centre row, visible length (rows), first row of the paddle window, visible,
    and whether a second paddle (as much colour as a visible one) lies outside that window."""
    near = delta[:, :, geo.paddle_cols[side]]
    # Paddle colour fraction per pixel. Projecting onto the paddle colour is quiet but also
    # sees the ball (white projects 2.5x onto orange); unmixing paddle colour from white
    # ignores the ball but is noisy (std-2 noise alone gave phantom paddles of 0.6 rows).
    # A pixel holds as much paddle as the smaller of the two says.
    mass = np.minimum(near @ _COLOUR_PROJECTION[side], near @ _PADDLE_UNMIX[side])  # (B, H, C)
    mass = np.where(geo.ball_rows[None, :, None], mass, 0.0).sum(-1)  # (B, H) row profile
    # The best paddle-length window, so that a stray ghost elsewhere does not pull the
    # centroid away from the paddle.
    start, total, second = _window_argmax(mass, geo.paddle_window)
    rows = start[:, None] + np.arange(geo.paddle_window)
    weights = np.clip(np.take_along_axis(mass, rows, axis=1), 0.0, None)
    centre = (weights * rows).sum(1) / np.maximum(weights.sum(1), 1e-6)
    # Mass / mass per row = how many rows of paddle are visible (the rendered paddle is a
    # rectangle, so mass and centroid pin down its area-averaged image).
    length = weights.sum(1) / geo.band_cover[side].sum()
    enough = PADDLE_MASS_FRACTION * MIN_PADDLE_ROWS * geo.paddle_row_mass
    return centre, length, start, total >= enough, second >= enough


def _paddle_image(centre: np.ndarray, length: np.ndarray, geo: Geometry, side: str) -> np.ndarray:
    """(B, H, band) paddle colour fraction of a clean paddle with that centre and length."""
    lower = (np.arange(geo.height) - 0.5)[None, :]
    top, bottom = (centre - 0.5 * length)[:, None], (centre + 0.5 * length)[:, None]
    rows = np.clip(np.minimum(bottom, lower + 1.0) - np.maximum(top, lower), 0.0, 1.0)
    return rows[:, :, None] * geo.band_cover[side][None, None, :]


def _score_ink(delta: np.ndarray, geo: Geometry) -> np.ndarray:
    """(B, h, W) digit ink above the top wall: orange on the left half, green on the right."""
    top = delta[:, : geo.score_rows]
    half = geo.width // 2
    return np.concatenate(
        [
            top[:, :, :half] @ _COLOUR_PROJECTION["opponent"],
            top[:, :, half:] @ _COLOUR_PROJECTION["player"],
        ],
        axis=2,
    ).astype(np.float32)


def _blob_masses(white: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ball-like blobs of (B, H, W) ball evidence: 8-connected pixels over the ball
    threshold, each frame on its own (the structure does not connect frames). Returns each
    blob's frame and mass (its pixels' sum: ~0.975 for a whole ball)."""
    structure = np.pad(np.ones((1, 3, 3), bool), ((1, 1), (0, 0), (0, 0)))
    labels, n = ndimage.label(white >= BALL_PEAK_THRESHOLD, structure=structure)
    frame = np.array([s[0].start for s in ndimage.find_objects(labels)], int)
    return frame, np.asarray(ndimage.sum(white, labels, np.arange(1, n + 1)), float)


def _count_blobs(white: np.ndarray) -> np.ndarray:
    frame, mass = _blob_masses(white)
    return np.bincount(frame[mass >= BLOB_MIN_MASS], minlength=len(white))


def detect(frames: np.ndarray) -> PongObjects:
    """Detect ball, paddles and score in (B, H, W, 3) frames (uint8, or floats on 0-255)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected (B, H, W, 3) frames, got shape {frames.shape}")
    batch, height, width, _ = frames.shape
    geo = geometry(height, width)
    pixels = frames.astype(np.float32)
    # Deviation from each row's median colour: the background in playfield rows, and the
    # right mix of background and wall in rows a wall edge crosses (the ball can sit there).
    # It also absorbs a slightly wrong background tint in reconstructed frames.
    delta = pixels - np.median(pixels, axis=2, keepdims=True)

    white = delta @ _WHITE_PROJECTION  # (B, H, W) fraction of full ball contrast
    paddle_y, paddle_ghost = {}, np.zeros(batch, bool)
    for side, colour in _SIDES.items():
        centre, length, start, visible, ghost = _find_paddle(delta, geo, side)
        paddle_y[side] = np.where(visible, centre, np.nan)
        paddle_ghost |= ghost
        # Near the paddle (its columns +- 1, one row of margin; also when it counts as
        # hidden, since a sliver peeking out of a wall projects onto white like a faint
        # ball) the ball must pass two tests, and the smaller estimate wins:
        # * unmixed: white unmixed from background and paddle colour. Blind to a paddle of
        #   the wrong shape (a reconstruction's fuzzy paddle end), but noisy: orange and
        #   white are only 22 degrees apart seen from the background, and std-3 noise
        #   alone gave 5% false balls near the orange paddle.
        # * fitted: subtract a clean paddle fitted to the detected one and measure what is
        #   left as white over background, or as white covering paddle (the ball is drawn
        #   over the paddle when they touch). As quiet as the plain projection.
        band = geo.band_cols[side]
        paddle = _paddle_image(centre, length, geo, side)[..., None] * (colour - BACKGROUND)
        rest = delta[:, :, band] - paddle
        fitted = np.maximum(rest @ _WHITE_PROJECTION, rest @ _WHITE_OVER[side])
        unmixed = delta[:, :, band] @ _WHITE_UNMIX[side]
        row = np.arange(height)[None, :]
        near = (row >= start[:, None] - 1) & (row <= start[:, None] + geo.paddle_window)
        # Elsewhere in the band the smaller of plain and unmixed: never more than plain (no
        # new false balls), and blind to a second, ghost paddle drawn by a dream.
        white[:, :, band] = np.where(
            near[:, :, None],
            np.minimum(fitted, unmixed),
            np.minimum(white[:, :, band], unmixed),
        )
    white = np.where(geo.ball_rows[None, :, None], white, 0.0)
    # The ball covers at most `ball_window` pixels at any sub-pixel offset: the best window
    # holds all of it, its sum is the ball's mass and its weighted centroid the ball centre.
    win_h, win_w = geo.ball_window
    mass = sliding_window_view(white, (win_h, win_w), axis=(1, 2)).sum((-2, -1))
    flat = mass.reshape(batch, -1).argmax(1)
    r0, c0 = np.unravel_index(flat, mass.shape[1:])
    rows = r0[:, None, None] + np.arange(win_h)[None, :, None]
    cols = c0[:, None, None] + np.arange(win_w)[None, None, :]
    patch = white[np.arange(batch)[:, None, None], rows, cols]  # (B, win_h, win_w)
    weights = np.clip(patch, 0.0, None)
    norm = np.maximum(weights.sum((1, 2)), 1e-6)
    ball_xy = np.stack(
        [(weights * cols).sum((1, 2)) / norm, (weights * rows).sum((1, 2)) / norm], axis=1
    )
    present = patch.max((1, 2)) >= BALL_PEAK_THRESHOLD
    ball_xy[~present] = np.nan
    return PongObjects(
        ball_present=present,
        ball_xy=ball_xy,
        player_y=paddle_y["player"],
        opponent_y=paddle_y["opponent"],
        score_region=_score_ink(delta, geo),
        ball_blobs=_count_blobs(white),
        paddle_ghost=paddle_ghost,
    )


def _rate(hits: np.ndarray, mask: np.ndarray) -> float:
    return float(hits[mask].mean()) if mask.any() else float("nan")


def score_regions_agree(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(B,) bool: no 2x2 block of digit ink differs by more than SCORE_TOLERANCE."""
    diff = sliding_window_view(np.abs(a - b), (2, 2), axis=(1, 2)).sum((-2, -1))
    return diff.max(axis=(1, 2)) <= SCORE_TOLERANCE  # (no frames: an empty answer)


def compare(real: PongObjects, other: PongObjects, tol_px: float = 1.0) -> dict[str, float]:
    """How well `other` (e.g. reconstructed or predicted frames) matches `real`.

    ball_recall: real ball present -> other finds it within tol_px. ball_false_positive_rate:
    real has no ball -> other reports one. paddle_y_error_px: mean abs error over both
    paddles where visible in both; paddle_miss_rate: visible in real, not in other.
    score_match: fraction of frames whose score digits agree. nan where a rate has no cases.
    """
    dist = np.linalg.norm(real.ball_xy - other.ball_xy, axis=1)
    found = other.ball_present & (np.nan_to_num(dist, nan=np.inf) <= tol_px)
    real_y = np.concatenate([real.player_y, real.opponent_y])
    other_y = np.concatenate([other.player_y, other.opponent_y])
    in_real = ~np.isnan(real_y)
    both = in_real & ~np.isnan(other_y)
    return {
        "ball_recall": _rate(found, real.ball_present),
        "ball_false_positive_rate": _rate(other.ball_present, ~real.ball_present),
        "paddle_y_error_px": float(np.abs(real_y - other_y)[both].mean())
        if both.any()
        else float("nan"),
        "paddle_miss_rate": _rate(np.isnan(other_y), in_real),
        "score_match": float(score_regions_agree(real.score_region, other.score_region).mean()),
    }
