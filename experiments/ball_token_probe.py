"""How much of the ball reaches a tokenizer's tokens? Trains nothing.

    python experiments/ball_token_probe.py CKPT [CKPT ...] --out DIR

For every held-out frame with the ball in one of the four middle patches (where nothing
else is ever drawn: no paddle, wall or score) it encodes the frame and a copy with the
ball painted over in background colour, and looks at the token of the patch that holds
the ball:

* changed: the token differs with and without the ball (the ball reaches the token);
* empty-patch codes: how many different codes the ball-less patches got. They all show
  the same empty brown square, so more than one means the codes also carry the patch's
  surroundings, spending the 512 codes on context instead of content;
* position spread: for codes seen with the ball at least 3 times, the std of the ball's
  position inside the patch (px). The decoder can only draw the ball as precisely as this;
  a code that says nothing about where the ball is would give the uniform spread.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from worldmodel.data.held_out import held_out_frames
from worldmodel.envs import EnvSpec
from worldmodel.envs.pong_detector import detect
from worldmodel.envs.pong_screen import BACKGROUND
from worldmodel.eval.report import markdown_table, write_report
from worldmodel.lit.checkpoints import load_tokenizer


def middle_balls(frames: np.ndarray, margin: int = 18) -> tuple[np.ndarray, np.ndarray]:
    """Frames whose ball centre is at least `margin` px from every edge (at 64x64: inside
    the middle 2x2 patches, clear of paddles, walls and score), and those ball centres."""
    found = detect(frames)
    xy = found.ball_xy
    size = frames.shape[1]
    inside = found.ball_present & np.all((xy > margin) & (xy < size - margin), axis=1)
    return frames[inside], xy[inside]


def erase_balls(frames: np.ndarray, xy: np.ndarray, radius: int = 2) -> np.ndarray:
    erased = frames.copy()
    for frame, (x, y) in zip(erased, np.rint(xy).astype(int), strict=True):
        frame[y - radius : y + radius + 1, x - radius : x + radius + 1] = BACKGROUND
    return erased


def probe(ckpt: Path, frames: np.ndarray, xy: np.ndarray) -> dict[str, float]:
    tokenizer = load_tokenizer(ckpt).eval()
    patch = tokenizer.patch
    width = tokenizer.latent_shape[1]
    cell = (xy[:, 1] // patch).astype(int) * width + (xy[:, 0] // patch).astype(int)
    rows = np.arange(len(frames))
    with torch.inference_mode():
        with_ball = tokenizer.encode(torch.from_numpy(frames))[rows, cell].numpy()
        without = tokenizer.encode(torch.from_numpy(erase_balls(frames, xy)))[rows, cell].numpy()
    in_patch = xy % patch
    spreads, counts = [], []
    for code in np.unique(with_ball):
        seen = with_ball == code
        if seen.sum() >= 3:
            spreads.append(in_patch[seen].std(0).mean())
            counts.append(seen.sum())
    return {
        "frames": float(len(frames)),
        "token_changed_by_ball": float((with_ball != without).mean()),
        "empty_patch_codes": float(len(np.unique(without))),
        "ball_patch_codes": float(len(np.unique(with_ball))),
        "position_spread_px": float(np.average(spreads, weights=counts)),
        "uniform_spread_px": float(in_patch.std(0).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpts", type=Path, nargs="+")
    parser.add_argument("--data-dir", default="data/val")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    frames, xy = middle_balls(held_out_frames(EnvSpec(frame_size=64), args.data_dir))
    results = {str(ckpt): probe(ckpt, frames, xy) for ckpt in args.ckpts}
    columns = list(next(iter(results.values())))
    rows = [[name, *(f"{v:.3g}" for v in r.values())] for name, r in results.items()]
    command = "python experiments/ball_token_probe.py " + " ".join(sys.argv[1:])
    table = markdown_table(["checkpoint", *columns], rows)
    title = "Does the ball reach the tokens?"
    write_report(args.out, "ball_token_probe", title, command, table, results)


if __name__ == "__main__":
    main()
