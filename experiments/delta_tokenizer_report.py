"""Evaluate a context-aware (Delta) tokenizer's checkpoint on the held-out tracker episodes.

    python experiments/delta_tokenizer_report.py CKPT --out DIR [--chain 30]

Two ways, both from the frame just before (gap 1), as the dream asks:
* teacher-forced: every frame drawn from the real frame before it;
* chained: every frame drawn from the tokenizer's own drawing of the frame before (from a
  real start, `--chain` steps): how errors pile up when the dream feeds the decoder its own
  output.
Ball recall within 1 px (also right of x = 51 px, next to the player's paddle), false balls,
ghosts, paddle error, codebook usage and the shuffled-token ratio (1.0: the decoder ignores
its tokens). Writes DIR/delta_tokenizer_report.md, DIR/delta_tokenizer_metrics.json and
DIR/delta_tokenizer_grid.png (rows: previous, real, drawn, |difference|).
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from worldmodel.data.held_out import DEFAULT, HeldOut, held_out_episodes
from worldmodel.envs import EnvSpec
from worldmodel.eval.pong_detector import compare, detect
from worldmodel.frames import to_uint8_frames
from worldmodel.lit.delta_tokenizer_module import DeltaTokenizerModule
from worldmodel.models.delta_tokenizer import DeltaTokenizer, shuffled_token_ratio
from worldmodel.models.quantizer import codebook_stats

PLAYER_SIDE_X = 51.0  # the ball right of this is next to the player's paddle


def ball_scores(real: np.ndarray, drawn: np.ndarray) -> dict[str, float]:
    a, b = detect(real), detect(drawn)
    scores = compare(a, b)
    right = a.ball_present & (a.ball_xy[:, 0] > PLAYER_SIDE_X)
    scores["ball_recall_right_of_51px"] = compare(a[right], b[right])["ball_recall"]
    scores["ghost_ball_frames"] = float((b.ball_blobs > 1).mean())
    return scores


@torch.inference_mode()
def teacher_forced(model: DeltaTokenizer, previous, actions, frames, chunk: int = 128):
    tokens, drawn = [], []
    for i in range(0, len(frames), chunk):
        p, a, f = (torch.from_numpy(x[i : i + chunk]) for x in (previous, actions, frames))
        t = model.encode(p, a, f)
        tokens.append(t)
        drawn.append(to_uint8_frames(model.decode(p, a, t)))
    return torch.cat(tokens), torch.cat(drawn).numpy()


@torch.inference_mode()
def chained(model: DeltaTokenizer, frames: np.ndarray, actions: np.ndarray, starts, length: int):
    """From real frame s, draw s+1..s+length each from the previous *drawing* (B, L, ...)."""
    previous = torch.from_numpy(frames[starts])
    drawn = []
    for h in range(1, length + 1):
        a = torch.from_numpy(actions[starts + h - 1])
        t = model.encode(previous, a, torch.from_numpy(frames[starts + h]))
        previous = to_uint8_frames(model.decode(previous, a, t))
        drawn.append(previous.numpy())
    return np.stack(drawn, 1)


def grid(previous, frames, drawn, n: int = 8, zoom: int = 4) -> Image.Image:
    rows = [previous[:n], frames[:n], drawn[:n]]
    diff = np.abs(drawn[:n].astype(int) - frames[:n].astype(int)).astype(np.uint8)
    image = np.concatenate([np.concatenate(list(r), 1) for r in [*rows, diff]], 0)
    return Image.fromarray(image.repeat(zoom, 0).repeat(zoom, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt")
    parser.add_argument("--out", required=True)
    parser.add_argument("--data-dir", default="data/val")
    parser.add_argument("--chain", type=int, default=30)
    parser.add_argument("--episodes", type=int, default=DEFAULT.episodes)
    parser.add_argument("--max-steps", type=int, default=DEFAULT.max_steps)
    args = parser.parse_args()
    module = DeltaTokenizerModule.load_from_checkpoint(args.ckpt, map_location="cpu")
    model = module.tokenizer.eval()
    episodes = held_out_episodes(
        EnvSpec(), args.data_dir, HeldOut(args.episodes, args.max_steps, DEFAULT.seed)
    )
    # Pairs from frame 1 on: frame 0 of an episode has another palette and no frame before.
    previous = np.concatenate([e.frames[1:-1] for e in episodes])
    frames = np.concatenate([e.frames[2:] for e in episodes])
    actions = np.concatenate([e.actions[1:-1] for e in episodes])
    tokens, drawn = teacher_forced(model, previous, actions, frames)
    metrics = {"teacher_forced": ball_scores(frames, drawn)}
    metrics["teacher_forced"]["codebook_usage"] = float(
        codebook_stats(tokens, model.cfg.num_codes)["usage"]
    )
    sample = np.linspace(0, len(frames) - 1, 256).astype(int)
    metrics["teacher_forced"]["shuffled_token_ratio"] = shuffled_token_ratio(
        model, *(torch.from_numpy(x[sample]) for x in (previous, actions, frames))
    )
    episode = episodes[0]
    if len(episode) < args.chain + 3:
        raise SystemExit(f"error: the held-out episode is shorter than --chain {args.chain} + 3")
    starts = np.linspace(1, len(episode) - args.chain - 2, 32).astype(int)
    chain = chained(model, episode.frames, episode.actions, starts, args.chain)
    real = np.stack([episode.frames[starts + h] for h in range(1, args.chain + 1)], 1)
    metrics["chained"] = {
        f"h={h}": ball_scores(real[:, h - 1], chain[:, h - 1])
        for h in (1, 5, 10, 20, args.chain)
        if h <= args.chain
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "delta_tokenizer_metrics.json").write_text(json.dumps(metrics, indent=2))
    grid(previous[sample], frames[sample], drawn[sample]).save(out / "delta_tokenizer_grid.png")
    keys = [
        "ball_recall",
        "ball_recall_right_of_51px",
        "ball_false_positive_rate",
        "ghost_ball_frames",
        "paddle_y_error_px",
        "score_match",
    ]
    lines = [
        "# Context-aware tokenizer",
        "",
        f"`python experiments/delta_tokenizer_report.py {args.ckpt} --out {args.out}`: "
        f"{len(frames)} held-out pairs; chained: 32 starts x {args.chain} steps.",
        "",
        "| drawn from | " + " | ".join(keys) + " |",
        "|---|" + "---:|" * len(keys),
    ]
    for name, scores in [("real frame before", metrics["teacher_forced"])] + [
        (f"own drawing, {h}", s) for h, s in metrics["chained"].items()
    ]:
        lines.append(f"| {name} | " + " | ".join(f"{scores[k]:.3f}" for k in keys) + " |")
    tf = metrics["teacher_forced"]
    lines += [
        "",
        f"Codebook usage {tf['codebook_usage']:.1%}, shuffled-token ratio "
        f"{tf['shuffled_token_ratio']:.2f} (1.0: tokens ignored).",
        "",
        "![grid](delta_tokenizer_grid.png)",
    ]
    (out / "delta_tokenizer_report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
