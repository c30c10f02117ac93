"""How many codes a token patch needs to keep the ball within 1 px: an estimate for a
tokenizer that gives each 16x16 patch of a 64x64 frame one code of its own (local encoder, a
codebook per place).

    python experiments/ball_code_budget.py [--episodes 160] [--codes 512]

A code draws one fixed patch. To put the ball within 1 px of every real ball, a patch needs a
code per (what else is in the patch, ball place): the rest of the patch is the paddle of that
column at its height (rounded to a pixel) and, in the top row, the score digits. On tracker
play (the training data) the script greedily covers the balls of each patch with codes (a code
serves the balls within 1 px of its own, with the same rest of the patch), after one code per
ball-free content, and reports:

- codes needed to keep 90 / 95 / 99% of the sample's balls;
- the share of the sample's balls, and of the held-out balls (the validation episodes that
  `tokenizer_report.py` scores), that the best `--codes` codes of the sample keep. The
  held-out share is lower by the pairs the sample never showed, which shrinks as the sample
  grows (`--episodes`); the sample's share does not depend on generalising.

An estimate, both ways: greedy covering needs up to ~ln(n) times the fewest codes, and a code
here must match the paddle to the pixel (the paddle metric allows 1 px), so "needed" is high
and the shares are low against a perfect codebook; but a real tokenizer never places its
codes this well. It ignores what the decoder could take from neighbouring tokens.
"""

import argparse
from dataclasses import fields
from pathlib import Path

import numpy as np

from worldmodel.data.held_out import DEFAULT, HeldOut, held_out_episodes, held_out_frames
from worldmodel.envs import EnvSpec
from worldmodel.envs.pong_detector import PongObjects, detect
from worldmodel.eval.report import markdown_table, write_report

PATCH, GRID, TOLERANCE_PX = 16, 4, 1.0  # 64x64 frames in 4x4 tokens, as the detector sees them
SAMPLE_SEED = 4321  # not the validation seed: the held-out episodes stay unseen


def patch_contents(objects: PongObjects) -> tuple[np.ndarray, np.ndarray, list[list]]:
    """Per frame: the ball's patch (row, col; -1 without a ball) and, per patch, a hashable
    description of everything in it but the ball."""
    has = objects.ball_present
    xy = np.where(has[:, None], objects.ball_xy, 0.0)
    row, col = (np.floor(xy[:, ::-1] + 0.5) // PATCH).astype(int).T
    row, col = np.where(has, row, -1), np.where(has, col, -1)
    # Score ink (full width, above the top wall), rounded: the digits each top patch shows.
    score = np.round(objects.score_region, 1)
    contents = []
    for i in range(len(has)):
        per_patch = []
        for r in range(GRID):
            for c in range(GRID):
                paddle_y = {0: objects.opponent_y[i], GRID - 1: objects.player_y[i]}.get(c)
                top, bottom = r * PATCH, (r + 1) * PATCH
                # The paddle is ~5 px tall at 64x64: it reaches a patch within 3 px of its centre.
                near = paddle_y is not None and not np.isnan(paddle_y)
                paddle = int(round(paddle_y)) if near and top - 3 <= paddle_y < bottom + 3 else None
                digits = score[i, :, c * PATCH : (c + 1) * PATCH].tobytes() if r == 0 else None
                per_patch.append((paddle, digits))
        contents.append(per_patch)
    return row, col, contents


def greedy_cover(points: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Code centres (chosen among the points) in the order greedy covering picks them, each
    with the indices of the points it newly covers."""
    # Ball places come from whole screen pixels, so they repeat: cover each place once.
    unique, inverse = np.unique(np.round(points, 3), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    count = np.bincount(inverse, minlength=len(unique)).astype(np.float32)
    near = np.linalg.norm(unique[:, None] - unique[None], axis=-1) <= TOLERANCE_PX
    weights = near.astype(np.float32)
    uncovered, picks = np.ones(len(unique), bool), []
    while uncovered.any():
        best = int((weights @ (count * uncovered)).argmax())
        newly = near[best] & uncovered
        picks.append((unique[best], np.flatnonzero(newly[inverse])))
        uncovered &= ~near[best]
    return picks


def budget(sample: PongObjects, held: PongObjects, codes: int) -> dict:
    s_row, s_col, s_contents = patch_contents(sample)
    h_row, h_col, h_contents = patch_contents(held)
    results = {}
    for r in range(GRID):
        for c in range(GRID):
            p = r * GRID + c
            ball_free = {s_contents[i][p] for i in range(len(s_row))}
            at = np.flatnonzero((s_row == r) & (s_col == c))
            # Greedy covering within each content group, then all picks merged by gain.
            picks = []
            groups: dict = {}
            for i in at:
                groups.setdefault(s_contents[i][p], []).append(i)
            for content, members in groups.items():
                for centre, covered in greedy_cover(sample.ball_xy[members]):
                    picks.append((len(covered), content, centre))
            picks.sort(key=lambda x: -x[0])
            kept = np.cumsum([g for g, _, _ in picks]) / max(len(at), 1)
            needed = {
                q: len(ball_free) + (int(np.searchsorted(kept, q)) + 1 if len(at) else 0)
                for q in (0.90, 0.95, 0.99)
            }
            # The best `codes` codes (ball-free contents first), scored on the held-out balls.
            chosen: dict = {}
            for _, content, centre in picks[: max(codes - len(ball_free), 0)]:
                chosen.setdefault(content, []).append(centre)
            held_at = np.flatnonzero((h_row == r) & (h_col == c))
            kept_held = [
                content in chosen
                and (
                    np.linalg.norm(np.array(chosen[content]) - held.ball_xy[i], axis=1).min()
                    <= TOLERANCE_PX
                )
                for i in held_at
                for content in [h_contents[i][p]]
            ]
            spent = min(max(codes - len(ball_free), 0), len(picks))
            results[f"{r},{c}"] = {
                "sample_balls": int(len(at)),
                "sample_kept": float(kept[spent - 1]) if spent else 0.0,
                "ball_free_contents": len(ball_free),
                "codes_needed": {f"{int(q * 100)}%": n for q, n in needed.items()},
                "held_out_balls": int(len(held_at)),
                "held_out_kept": float(np.mean(kept_held)) if kept_held else float("nan"),
            }
    sample_total = sum(v["sample_kept"] * v["sample_balls"] for v in results.values())
    kept_total = sum(
        v["held_out_kept"] * v["held_out_balls"] for v in results.values() if v["held_out_balls"]
    )
    results["all"] = {
        "sample_kept": sample_total / sum(v["sample_balls"] for v in results.values()),
        "held_out_kept": kept_total / sum(v["held_out_balls"] for v in results.values()),
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=160)
    parser.add_argument("--codes", type=int, default=512)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--out", type=Path, default=Path("experiments/reports/ball_code_budget"))
    args = parser.parse_args()
    spec = EnvSpec()
    episodes = held_out_episodes(
        spec,
        Path(args.data_dir) / "budget",
        HeldOut(args.episodes, DEFAULT.max_steps, SAMPLE_SEED),
    )
    # Episode by episode: the detector works in float32, 16 bytes a pixel for 100k+ frames.
    found = [detect(e.frames[1:]) for e in episodes]
    sample = PongObjects(
        *(np.concatenate([getattr(f, k.name) for f in found]) for k in fields(PongObjects))
    )
    held = detect(held_out_frames(spec, str(Path(args.data_dir) / "val")))
    results = budget(sample, held, args.codes)
    header = [
        "patch (row, col)",
        "sample balls",
        "ball-free contents",
        "codes for 90 / 95 / 99%",
        f"sample balls kept by {args.codes} codes",
        f"held-out balls kept by {args.codes} codes",
    ]
    rows = [
        [
            f"({k})",
            str(v["sample_balls"]),
            str(v["ball_free_contents"]),
            " / ".join(str(n) for n in v["codes_needed"].values()),
            f"{v['sample_kept']:.1%}",
            f"{v['held_out_kept']:.0%} of {v['held_out_balls']}",
        ]
        for k, v in results.items()
        if k != "all"
    ]
    total = results["all"]
    rows.append(["all", "", "", "", f"{total['sample_kept']:.1%}", f"{total['held_out_kept']:.1%}"])
    write_report(
        args.out,
        "ball_code_budget",
        "Codes a patch needs to keep the ball within 1 px",
        f"python experiments/ball_code_budget.py --episodes {args.episodes} --codes {args.codes}",
        markdown_table(header, rows),
        results,
    )


if __name__ == "__main__":
    main()
