"""Models side by side on the same eval: every row of the open-loop, event and closed-loop
tables of their `python -m worldmodel.eval` reports, their training time and their play
speed. A sampled eval of 32 rollouts moves a lot with its seed (the shipped model's ball
error at h=5: 10.1 px with seed=0, 5.6 with seed=1), so compare each model at two seeds.

    python experiments/compare_models.py EVAL_DIR EVAL_DIR [...] --names new old [...] \
        [--train-info NEW.json OLD.json ...] [--bench NEW.json OLD.json ...] --out DIR

`--train-info`: a JSON of the stages' train_info.json ({"tokenizer": {...}, "world_model":
{...}}, wall_time_s each, as experiments/gpu/train_and_eval.sh writes it) or a number of
hours; `--bench`: experiments/bench_play.py's JSON.
"""

import argparse
import json
import shlex
import sys
from pathlib import Path

from worldmodel.eval.report import CLOSED_LOOP_ROWS, markdown_table, write_report

OPEN_LOOP = (  # (metric, label, horizons, format)
    ("player_paddle_err_px", "player paddle error (px)", (1, 10, 30), ".2f"),
    ("opponent_paddle_err_px", "opponent paddle error (px)", (1, 10), ".2f"),
    ("ball_err_px", "ball error (px; a missing ball counts the largest)", (1, 5, 10), ".1f"),
    ("ball_in_play_err_px", "... of balls in play since the context (px)", (1, 5, 10), ".1f"),
    ("ball_present_agreement", "ball presence agreement", (1, 5, 10), ".2f"),
    ("psnr_db", "PSNR (dB)", (1, 10, 30), ".1f"),
)


def open_loop_rows(runs: list[dict], part: str = "") -> list[list[str]]:
    rows = []
    for dream in ("model", "model_greedy"):
        for metric, label, horizons, fmt in OPEN_LOOP:
            for h in horizons:
                cells = []
                for run in runs:
                    # An eval older than a metric leaves its cells empty.
                    values = (run[part] if part else run)[dream].get(metric, [])
                    cells.append(format(values[h - 1], fmt) if h <= len(values) else "-")
                rows.append([f"{dream}: {label}, h={h}", *cells])
    return rows


def event_rows(runs: list[dict]) -> list[list[str]]:
    rows = []
    for source in runs[0]["events"]:
        for dream in ("model", "model_greedy"):
            for kind in ("paddle_bounce", "wall_bounce", "point"):
                cells = []
                for run in runs:
                    s = run["events"][source][dream][kind]
                    cells.append(
                        f"{s['recall']:.2f} / {s['precision']:.2f} (chance {s['chance']:.2f})"
                    )
                rows.append([f"{source} {dream}: {kind} recall / precision", *cells])
    return rows


def closed_loop_rows(runs: list[dict]) -> list[list[str]]:
    rows = []
    for game in ("dream_mean", "dream_greedy", "real_tokenized", "real"):
        for key, label, fmt in CLOSED_LOOP_ROWS:
            cells = [format(run["closed_loop"][game][key], fmt) for run in runs]
            rows.append([f"{game}: {label}", *cells])
    return rows


def training_hours(source: str) -> float:
    try:
        return float(source)
    except ValueError:
        stages = json.loads(Path(source).read_text())
        return sum(stage["wall_time_s"] for stage in stages.values()) / 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evals", nargs="+", type=Path, help="two or more eval output folders")
    parser.add_argument("--names", nargs="+", required=True, help="one per eval folder")
    parser.add_argument("--train-info", nargs="+")
    parser.add_argument("--bench", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("experiments/reports/comparison"))
    args = parser.parse_args()
    for flag, values in (
        ("--names", args.names),
        ("--train-info", args.train_info),
        ("--bench", args.bench),
    ):
        if values is not None and len(values) != len(args.evals):
            parser.error(f"{flag} needs one value per eval folder ({len(args.evals)})")
    runs = [json.loads((d / "fidelity.json").read_text()) for d in args.evals]
    rows = open_loop_rows(runs)
    rows += [[f"random play, {r[0]}", *r[1:]] for r in open_loop_rows(runs, "random_policy")]
    rows += event_rows(runs) + closed_loop_rows(runs)
    if args.train_info:
        rows.append(
            ["training wall time on 2 CPU cores (h)"]
            + [f"{training_hours(s):.2f}" for s in args.train_info]
        )
    if args.bench:
        benches = [json.loads(p.read_text()) for p in args.bench]
        for key, label in (("fps_cached", "play, batch 1"), ("fps_batch64", "batch 64")):
            rows.append([f"frames/s, {label}", *(f"{b[key]:.0f}" for b in benches)])
    command = shlex.join(["python", "experiments/compare_models.py", *sys.argv[1:]])
    write_report(
        args.out,
        "comparison",
        f"{' vs '.join(args.names)}: the same eval",
        command,
        markdown_table(["", *args.names], rows),
        {"names": args.names, "rows": rows},
    )


if __name__ == "__main__":
    main()
