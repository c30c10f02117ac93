"""The fidelity report's parts: markdown tables, the per-horizon plot, the contact sheet and
the closed-loop video. Each takes the results (or frames) and nothing else. And what every
experiment (experiments/) ends with: a table, printed and saved with its JSON."""

import json
import warnings
from pathlib import Path

import imageio.v2 as imageio
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

REPORT_STEPS = (1, 5, 10, 20, 30, 40, 60)
SOURCES = ("model", "model_greedy", "copy_last", "tokenizer_ceiling")
SHEET_STEPS = (1, 2, 3, 5, 8, 12, 20, 30, 45, 60)
SCALE = 4  # nearest-neighbour upscaling of 64x64 frames in the sheet and the video


def horizon_table(per_source: dict, horizon: int, sources: tuple[str, ...] = SOURCES) -> str:
    steps = [s for s in REPORT_STEPS if s <= horizon]
    lines = [
        "| metric | source | " + " | ".join(f"h={s}" for s in steps) + " |",
        "|---|---|" + "---:|" * len(steps),
    ]
    for metric in per_source[sources[0]]:
        for source in sources:
            values = per_source[source][metric]
            cells = " | ".join(f"{values[s - 1]:.2f}" for s in steps)
            lines.append(f"| {metric} | {source} | {cells} |")
    return "\n".join(lines)


def in_play_note(counts: list[int], rollouts: int, horizon: int) -> str:
    """What ball_in_play_err_px averages over, per step: a sentence under a horizon table."""
    shown = ", ".join(f"h={s}: {counts[s - 1]}" for s in REPORT_STEPS if s <= horizon)
    return (
        "ball_in_play_err_px: the ball error over the rollouts whose real ball has been in play "
        f"since the last context frame, with no serve or point to time ({shown} of {rollouts})."
    )


def motion_table(motion: dict) -> str:
    sources = ("real", "tokenizer_ceiling", "model", "model_greedy")
    lines = ["| ball, over all steps | " + " | ".join(sources) + " |", "|---|" + "---:|" * 4]
    for key, name in (
        ("ball_seen", "seen (fraction of frames)"),
        ("ball_moving", "moved 2 px or more in two steps (fraction)"),
        ("horizontal_reversals_per_100", "horizontal reversals (paddle hits, serves) / 100 steps"),
        ("horizontal_reversals_middle_per_100", "... of them in the middle half (jitter)"),
        ("vertical_reversals_per_100", "vertical reversals (wall bounces) / 100 steps"),
        ("vertical_reversals_middle_per_100", "... of them in the middle half (paddle or jitter)"),
    ):
        lines.append(f"| {name} | " + " | ".join(f"{motion[s][key]:.2f}" for s in sources) + " |")
    lost = (
        " / ".join(f"{v:.1f}" for v in motion[s]["ball_lost_per_100_by_quarter"]) for s in sources
    )
    lines.append(
        "| lost / 100 steps, by quarter of the width last seen in | " + " | ".join(lost) + " |"
    )
    return "\n".join(lines)


def events_table(events: dict) -> str:
    """events[source][dream][kind] -> one row per (source, dream, kind)."""
    lines = [
        "| held-out episodes | dream | event | real | predicted | recall | precision | chance |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for source, dreams in events.items():
        for dream, kinds in dreams.items():
            for kind, s in kinds.items():
                lines.append(
                    f"| {source} | {dream} | {kind} | {s['real']} | {s['predicted']} | "
                    f"{s['recall']:.2f} | {s['precision']:.2f} | {s['chance']:.2f} |"
                )
    return "\n".join(lines)


TOKENIZER_COLUMNS = (
    ("ball_recall", "ball recall (1 px)"),
    ("ball_recall_right_of_51px", "... right of x = 51 px"),
    ("ball_false_positive_rate", "false balls"),
    ("ghost_ball_frames", "frames with 2+ balls"),
    ("paddle_y_error_px", "paddle error (px)"),
    ("score_match", "score match"),
    ("psnr_db", "PSNR (dB)"),
)


def tokenizer_table(scores: dict) -> str:
    rows = [("real frames before", scores["teacher_forced"])]
    rows += [(f"own drawing, {h}", s) for h, s in scores.get("chained", {}).items()]
    rows += [
        (f"own drawing as predicted (no tokens), {h}", s)
        for h, s in scores.get("chained_as_predicted", {}).items()
    ]
    lines = [
        "| drawn from | " + " | ".join(label for _, label in TOKENIZER_COLUMNS) + " |",
        "|---|" + "---:|" * len(TOKENIZER_COLUMNS),
    ]
    for name, s in rows:
        lines.append(
            f"| {name} | " + " | ".join(f"{s[k]:.3f}" for k, _ in TOKENIZER_COLUMNS) + " |"
        )
    extras = [
        f"{label} {scores[key]:.2f}"
        for key, label in (
            ("codebook_usage", "codes used"),
            ("shuffled_token_ratio", "shuffled-token ratio (1.0: tokens ignored)"),
            ("as_predicted_share", "frames coded as predicted"),
        )
        if key in scores
    ]
    return "\n".join(lines + ([""] + ["; ".join(extras)] if extras else []))


CLOSED_LOOP_ROWS = (
    ("ball_seen", "ball seen (fraction of frames)", ".2f"),
    ("ghost_ball_frames", "frames with more than one ball", ".3f"),
    ("ghost_paddle_frames", "frames with a second paddle", ".3f"),
    ("both_paddles_seen", "frames with both paddles", ".2f"),
    ("teleports_per_100", "teleports / 100 steps", ".2f"),
    ("paddle_reversals_per_100", "horizontal reversals near the paddles / 100 steps", ".2f"),
    ("paddle_bounces_per_100", "... of them off a paddle drawn there", ".2f"),
    ("midfield_reversals_per_100", "horizontal reversals in mid-field / 100 steps", ".2f"),
    ("wall_bounces_per_100", "wall bounces / 100 steps", ".2f"),
    ("points_won_per_1000", "points won / 1,000 steps", ".1f"),
    ("points_lost_per_1000", "points lost / 1,000 steps", ".1f"),
    ("longest_rally", "longest rally (alternating returns)", ".1f"),
    ("score_changes", "score digit changes", ".1f"),
    ("score_changes_off_point", "... more than 2 steps from a point", ".1f"),
    ("points_without_score_change", "points that leave the digits as they were", ".1f"),
    ("serves", "serves (ball back after > 3 steps away)", ".1f"),
    ("serves_without_point", "... with no point before them", ".1f"),
    ("longest_without_ball", "longest stretch without a ball (steps)", ".0f"),
)


def closed_loop_table(stats: dict) -> str:
    columns = {
        "real": stats["real"],
        "real, tokenized": stats["real_tokenized"],
        "dream (mean)": stats["dream_mean"],
    }
    columns.update({f"dream {i}": s for i, s in enumerate(stats["dream"])})
    columns["dream greedy"] = stats["dream_greedy"]
    lines = [
        "| closed loop | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for key, name, fmt in CLOSED_LOOP_ROWS:
        cells = " | ".join(format(c[key], fmt) for c in columns.values())
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


def plot(per_source: dict, path: Path) -> None:
    metrics = list(per_source["model"])
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2))
    for ax, metric in zip(axes, metrics, strict=True):
        for source in SOURCES:
            values = per_source[source][metric]
            ax.plot(np.arange(1, len(values) + 1), values, label=source)
        ax.set_title(metric)
        ax.set_xlabel("steps imagined")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _upscale(frames: np.ndarray) -> np.ndarray:
    return frames.repeat(SCALE, axis=-3).repeat(SCALE, axis=-2)


def contact_sheet(real: np.ndarray, dream: np.ndarray, path: Path, games: int = 4) -> list[int]:
    """Rows real, dream, real, dream, ... of the first `games` rollouts (B, H, h, w, 3) at
    SHEET_STEPS; returns the steps shown (the columns)."""
    steps = [s for s in SHEET_STEPS if s <= real.shape[1]]
    rows = []
    for g in range(min(games, len(real))):
        for frames in (real[g], dream[g]):
            tiles = _upscale(frames[[s - 1 for s in steps]])
            tiles = np.pad(tiles, ((0, 0), (2, 2), (2, 2), (0, 0)), constant_values=255)
            rows.append(np.concatenate(tiles, axis=1))
    imageio.imwrite(path, np.concatenate(rows, axis=0))
    return steps


def video(dream: np.ndarray, real: np.ndarray, path: Path, fps: int = 15) -> Path:
    """(T, h, w, 3) dream | real, side by side, upscaled; an mp4 (H.264 via imageio-ffmpeg),
    or where that package is missing (a bare GPU image) a GIF next to it. Returns the file."""
    gap = np.full((len(dream), dream.shape[1] * SCALE, 8, 3), 255, np.uint8)
    frames = np.concatenate([_upscale(dream), gap, _upscale(real)], axis=2)
    try:
        import imageio_ffmpeg  # noqa: F401  (imageio's mp4 writer)
    except ImportError:
        path = path.with_suffix(".gif")
        warnings.warn(f"imageio-ffmpeg is not installed: the video is a GIF, {path}", stacklevel=2)
        imageio.mimwrite(path, frames, duration=1000 / fps, loop=0)
        return path
    imageio.mimwrite(path, frames, fps=fps, macro_block_size=8)
    return path


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(out: Path, name: str, title: str, command: str, table: str, results: dict) -> None:
    """Print `table`; write out/name.md (title, command, table) and out/name.json."""
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2))
    (out / f"{name}.md").write_text(f"# {title}\n\nCommand: `{command}`\n\n{table}\n")
