"""Evaluate a tokenizer (checkpoint or bundle) on the held-out Pong episodes. Trains nothing.

    python experiments/tokenizer_report.py CKPT --out DIR

Writes DIR/tokenizer_report.md (metrics table, training record, PNG grid of real /
reconstructed / |difference|) and DIR/tokenizer_metrics.json. The held-out episodes are the
validation set of training (tracker policy, fixed seed), collected once into data/val.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from worldmodel.data.held_out import DEFAULT, HeldOut, held_out_frames
from worldmodel.envs import EnvSpec
from worldmodel.envs.pong_detector import PongObjects, compare, detect
from worldmodel.frames import to_uint8_frames
from worldmodel.lit.checkpoints import load_tokenizer
from worldmodel.models.quantizer import codebook_stats
from worldmodel.models.tokenizer import Tokenizer

TARGETS = {
    "ball_recall": (">=", 0.99),
    "ball_false_positive_rate": ("<=", 0.01),
    "paddle_y_error_px": ("<=", 1.0),
    "psnr_db": (">=", 35.0),
    "codebook_usage": (">=", 0.25),
}


def reconstruct(tokenizer: Tokenizer, frames: np.ndarray, chunk: int = 128):
    recons, tokens = [], []
    with torch.inference_mode():
        for i in range(0, len(frames), chunk):
            t = tokenizer.encode(torch.from_numpy(frames[i : i + chunk]))
            tokens.append(t)
            recons.append(to_uint8_frames(tokenizer.decode(t)).numpy())
    return np.concatenate(recons), torch.cat(tokens)


def reconstruct_unquantized(tokenizer: Tokenizer, frames: np.ndarray, chunk: int = 128):
    with torch.inference_mode():
        parts = [
            tokenizer.decode_unquantized(torch.from_numpy(part))
            for part in np.split(frames, range(chunk, len(frames), chunk))
        ]
    return to_uint8_frames(torch.cat(parts)).numpy()


def ball_by_patch_table(
    real: PongObjects, recon: PongObjects, patch: int, tol_px: float = 1.0
) -> list[str]:
    """Markdown table, one cell per token patch (where the real ball's centre is): how many
    real balls, how often the reconstruction draws the ball within 1 px, how often no ball."""
    has = real.ball_present
    xy = real.ball_xy[has]
    # Detector coordinates put pixel k's centre at k, so pixel k spans [k - 0.5, k + 0.5).
    row, col = (np.floor(xy[:, ::-1] + 0.5) // patch).astype(int).T
    dist = np.linalg.norm(xy - recon.ball_xy[has], axis=1)
    found = recon.ball_present[has] & (np.nan_to_num(dist, nan=np.inf) <= tol_px)
    missing = ~recon.ball_present[has]
    n_rows, n_cols = row.max(initial=0) + 1, col.max(initial=0) + 1

    def cell(at: np.ndarray) -> str:
        if not at.any():
            return "-"
        return f"{at.sum()} / {found[at].mean():.0%} / {missing[at].mean():.0%}"

    table = [
        "| patch row | " + " | ".join(f"col {c}" for c in range(n_cols)) + " |",
        "|---|" + "---:|" * n_cols,
    ]
    for r in range(n_rows):
        cells = [cell((row == r) & (col == c)) for c in range(n_cols)]
        table.append(f"| {r} | " + " | ".join(cells) + " |")
    return [
        f"Real balls by token patch: count / recalled within {tol_px:g} px / not drawn at all",
        "",
        *table,
    ]


def evaluate(tokenizer: Tokenizer, frames: np.ndarray) -> tuple[dict, np.ndarray, list[str]]:
    recon, tokens = reconstruct(tokenizer, frames)
    diff = ((recon.astype(np.float32) - frames.astype(np.float32)) / 255).reshape(len(frames), -1)
    psnr = 10 * np.log10(1.0 / np.maximum((diff**2).mean(1), 1e-10))
    quantizer = tokenizer.quantizer
    codes = codebook_stats(quantizer.code_ids(tokens), quantizer.total_codes)
    ids = codebook_stats(tokens, quantizer.num_codes)
    real, rebuilt = detect(frames), detect(recon)
    metrics = compare(real, rebuilt)
    metrics.update(
        {
            "psnr_db": float(psnr.mean()),
            # Of all codes (every book's, with a codebook per position); and of the token ids
            # (the world model's vocabulary), which differ only with several books.
            "codebook_usage": float(codes["usage"]),
            "token_id_usage": float(ids["usage"]),
            "perplexity": float(codes["perplexity"]),
            "frames": len(frames),
        }
    )
    # The same frames through the autoencoder without its codebook: what quantization loses.
    unquantized = compare(real, detect(reconstruct_unquantized(tokenizer, frames)))
    metrics["ball_recall_unquantized"] = unquantized["ball_recall"]
    metrics["ball_false_positive_rate_unquantized"] = unquantized["ball_false_positive_rate"]
    by_patch = ball_by_patch_table(real, rebuilt, tokenizer.patch)
    return {k: float(v) for k, v in metrics.items()}, recon, by_patch


def grid(frames: np.ndarray, recon: np.ndarray, n: int = 8, zoom: int = 4) -> Image.Image:
    pick = np.linspace(0, len(frames) - 1, n).astype(int)
    real, rec = frames[pick], recon[pick]
    diff = np.abs(real.astype(int) - rec.astype(int)).clip(0, 255).astype(np.uint8) * 4
    rows = [np.concatenate(list(x), axis=1) for x in (real, rec, diff)]
    image = np.concatenate(rows, axis=0)
    return Image.fromarray(image).resize(
        (image.shape[1] * zoom, image.shape[0] * zoom), Image.NEAREST
    )


def training_record(ckpt: Path) -> dict:
    """train_info.json of the stage that wrote the checkpoint (stage/checkpoints/x.ckpt)."""
    for candidate in (ckpt.parent.parent / "train_info.json", ckpt.parent / "train_info.json"):
        if candidate.exists():
            return json.loads(candidate.read_text())
    return {}


def passes(value: float, rule: tuple[str, float]) -> bool:
    op, target = rule
    return value >= target if op == ">=" else value <= target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-dir", default="data/val")
    parser.add_argument(
        "--train-info",
        type=Path,
        default=None,
        help="train_info.json of the tokenizer stage (found by itself next to a stage checkpoint)",
    )
    parser.add_argument("--episodes", type=int, default=DEFAULT.episodes)
    parser.add_argument("--max-steps", type=int, default=DEFAULT.max_steps)
    args = parser.parse_args()

    start = time.time()
    tokenizer = load_tokenizer(args.ckpt)
    spec = EnvSpec(frame_size=tokenizer.cfg.autoencoder.resolution)
    frames = held_out_frames(
        spec, args.data_dir, HeldOut(args.episodes, args.max_steps, DEFAULT.seed)
    )
    metrics, recon, by_patch = evaluate(tokenizer, frames)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tokenizer_metrics.json").write_text(json.dumps(metrics, indent=2))
    grid(frames, recon).save(args.out / "tokenizer_grid.png")
    lines = ["| metric | value | target | met |", "|---|---:|---:|:---:|"]
    for name, value in metrics.items():
        rule = TARGETS.get(name)
        target = f"{rule[0]} {rule[1]}" if rule else ""
        met = ("yes" if passes(value, rule) else "**no**") if rule else ""
        lines.append(f"| {name} | {value:.4g} | {target} | {met} |")
    record = (
        json.loads(args.train_info.read_text()) if args.train_info else training_record(args.ckpt)
    )
    report = [
        "# Tokenizer report",
        "",
        f"Checkpoint: `{args.ckpt}`  ",
        "Command: `python experiments/tokenizer_report.py " + " ".join(sys.argv[1:]) + "`  ",
        f"Held-out frames: {len(frames)} from {args.episodes} tracker episodes "
        f"(seed {DEFAULT.seed})",
        "",
        *lines,
        "",
        *by_patch,
        "",
        "## Training",
        "",
        *(f"- {k}: `{v}`" for k, v in record.items()),
        "",
        "## Reconstructions",
        "",
        "Rows: real, reconstructed, |difference| x4.",
        "",
        "![grid](tokenizer_grid.png)",
        "",
        f"Evaluation took {time.time() - start:.0f} s.",
        "",
    ]
    (args.out / "tokenizer_report.md").write_text("\n".join(report))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
