"""Which parts of the tokenizer loss/quantizer matter? Train each variant for the same
number of steps with the real training command, then score its drawings of the held-out
frames as the eval's tokenizer section does.

    python experiments/tokenizer_ablation.py [--steps 1200] [--batch-size 16] [--out DIR]

Every variant starts from scratch with the same seed, data and budget. The codebook needs
~750 steps to break out of its early collapse, so budgets much below 1,000 steps say
little.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from worldmodel.data.held_out import held_out_frames
from worldmodel.envs import EnvSpec
from worldmodel.eval.fidelity import reconstruct
from worldmodel.eval.report import markdown_table, write_report
from worldmodel.eval.tokenizer import drawing_scores
from worldmodel.lit.checkpoints import load_tokenizer
from worldmodel.models.quantizer import codebook_stats

VARIANTS = {
    "full recipe": [],
    "no perceptual (LPIPS) term": ["tokenizer.module.loss.perceptual_weight=0"],
    "no moving-object weighting": ["tokenizer.module.loss.moving_weight=0"],
    "no foreground or moving-object weighting": [
        "tokenizer.module.loss.foreground_weight=0",
        "tokenizer.module.loss.moving_weight=0",
    ],
    "no codebook remedy (plain codes, no revival)": [
        "tokenizer.module.model.cosine_codes=false",
        "tokenizer.module.model.revive_dead_codes=false",
    ],
}
COLUMNS = (
    "ball_recall",
    "ball_false_positive_rate",
    "paddle_y_error_px",
    "score_match",
    "psnr_db",
    "codebook_usage",
)


def cell(value: float) -> str:
    # nan paddle error: no paddle was found in any reconstruction (the model lost them)
    return "not found" if np.isnan(value) else f"{value:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("experiments/reports"))
    parser.add_argument("--runs", type=Path, default=Path("runs/ablation"))
    args = parser.parse_args()
    frames = held_out_frames(EnvSpec(), "data/val")
    no_actions = np.zeros(len(frames), np.int64)
    results = {}
    for k, (name, overrides) in enumerate(VARIANTS.items()):
        run_dir = args.runs / f"variant{k}"
        start = time.time()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "worldmodel.train",
                "stage=tokenizer",
                f"tokenizer.max_steps={args.steps}",
                f"tokenizer.batch_size={args.batch_size}",
                f"hydra.run.dir={run_dir}",
                "trainer.val_check_interval=100000",
                "trainer.enable_progress_bar=false",
                *overrides,
            ],
            check=True,
            capture_output=True,
        )
        tokenizer = load_tokenizer(run_dir / "tokenizer" / "checkpoints" / "last.ckpt")
        # (an IRIS tokenizer: no frame before, so the frames stand in for it)
        metrics = drawing_scores(frames, reconstruct(tokenizer, frames, no_actions, frames))
        with torch.inference_mode():
            tokens = torch.cat([tokenizer.encode(f) for f in torch.from_numpy(frames).split(256)])
        metrics["codebook_usage"] = float(codebook_stats(tokens, tokenizer.cfg.num_codes)["usage"])
        results[name] = {**metrics, "train_s": time.time() - start, "overrides": overrides}
        print(name, {c: round(metrics[c], 4) for c in COLUMNS}, flush=True)
    rows = [[name, *(cell(r[c]) for c in COLUMNS)] for name, r in results.items()]
    write_report(
        args.out,
        "tokenizer_ablation",
        f"Tokenizer ablation ({args.steps} steps of batch {args.batch_size} each, tiny config)",
        f"python experiments/tokenizer_ablation.py --steps {args.steps} "
        f"--batch-size {args.batch_size}",
        markdown_table(["variant", *COLUMNS], rows),
        results,
    )


if __name__ == "__main__":
    main()
