"""`python -m worldmodel.eval bundle=PATH [context=4 horizon=60 rollouts=32 out=DIR]`

Fidelity of the learned game against held-out real play; prints a table and writes
DIR/fidelity_report.md, DIR/fidelity_metrics.json and DIR/fidelity_vs_horizon.png.
"""

import functools
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from omegaconf.errors import OmegaConfBaseException  # noqa: E402

from worldmodel.bundle import BundleError, load_bundle  # noqa: E402
from worldmodel.data.datamodule import VAL_EPISODES, VAL_MAX_STEPS, VAL_SEED, held_out_episodes  # noqa: E402
from worldmodel.envs.policies import TrackerPolicy  # noqa: E402
from worldmodel.eval.fidelity import (  # noqa: E402
    ball_motion,
    detect_rollouts,
    per_step_metrics,
    reward_events,
    roll_out,
)

DEFAULTS = {
    "bundle": "???",
    "context": 4,
    "horizon": 60,
    "rollouts": 32,
    "temperature": 1.0,
    "top_p": 1.0,  # sample from the nucleus of this much probability (1: all of it)
    "seed": 0,
    "compile": True,  # torch.compile the world model's forward and the decoder (see LearnedGame)
    "out": "experiments/reports/fidelity",
    "data_dir": "data/val",
    "episodes": VAL_EPISODES,  # the held-out set training validated on
    "max_steps": VAL_MAX_STEPS,
}
REPORT_STEPS = (1, 5, 10, 20, 40, 60)
SOURCES = ("model", "model_greedy", "copy_last", "tokenizer_ceiling")


def evaluate(cfg) -> dict:
    bundle = load_bundle(cfg.bundle)
    context = min(cfg.context, bundle.world_model.cfg.max_frames - 1)
    episodes = held_out_episodes(
        bundle.spec,
        functools.partial(TrackerPolicy),
        cfg.data_dir,
        cfg.episodes,
        cfg.max_steps,
        seed=VAL_SEED,
    )
    results: dict = {"horizons": list(range(1, cfg.horizon + 1)), "ball_motion": {}}
    real_objects = None  # the same real frames for every source: detected once
    for name, greedy in (("model", False), ("model_greedy", True)):
        rollouts = roll_out(
            bundle,
            episodes,
            context,
            cfg.horizon,
            cfg.rollouts,
            cfg.temperature,
            cfg.seed,
            top_p=cfg.top_p,
            greedy=greedy,
            compile=cfg.compile,
        )
        if real_objects is None:
            real_objects = detect_rollouts(rollouts.real)
        objects = detect_rollouts(rollouts.imagined)
        metrics = per_step_metrics(rollouts.real, rollouts.imagined, (real_objects, objects))
        results[name] = {k: v.tolist() for k, v in metrics.items()}
        results["ball_motion"][name] = ball_motion(rollouts.imagined, objects)
        events = reward_events(rollouts.real_rewards, rollouts.imagined_rewards)
        results["reward_events" if name == "model" else "reward_events_greedy"] = events
    # The baselines do not depend on sampling: computed from the last rollouts' real frames.
    for name, other in (
        ("copy_last", rollouts.copy_last),
        ("tokenizer_ceiling", rollouts.reconstructed),
    ):
        objects = detect_rollouts(other)
        metrics = per_step_metrics(rollouts.real, other, (real_objects, objects))
        results[name] = {k: v.tolist() for k, v in metrics.items()}
        if name == "tokenizer_ceiling":
            results["ball_motion"][name] = ball_motion(other, objects)
    results["ball_motion"]["real"] = ball_motion(rollouts.real, real_objects)
    results["settings"] = {**OmegaConf.to_container(cfg), "context": context}
    return results


def table(results: dict, horizon: int) -> str:
    steps = [s for s in REPORT_STEPS if s <= horizon]
    lines = [
        "| metric | source | " + " | ".join(f"h={s}" for s in steps) + " |",
        "|---|---|" + "---:|" * len(steps),
    ]
    for metric in results["model"]:
        for source in SOURCES:
            values = results[source][metric]
            cells = " | ".join(f"{values[s - 1]:.2f}" for s in steps)
            lines.append(f"| {metric} | {source} | {cells} |")
    return "\n".join(lines)


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


def plot(results: dict, path: Path) -> None:
    metrics = list(results["model"])
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2))
    for ax, metric in zip(axes, metrics, strict=True):
        for source in SOURCES:
            values = results[source][metric]
            ax.plot(np.arange(1, len(values) + 1), values, label=source)
        ax.set_title(metric)
        ax.set_xlabel("steps imagined")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str]) -> int:
    try:
        cfg = OmegaConf.create(DEFAULTS)
        OmegaConf.set_struct(cfg, True)
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(argv))
        start = time.time()
        results = evaluate(cfg)
    except (BundleError, OmegaConfBaseException, ValueError) as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fidelity.json").write_text(json.dumps(results, indent=2))
    plot(results, out / "fidelity_vs_horizon.png")
    text = table(results, cfg.horizon)
    rewards = results["reward_events"]
    report = [
        "# Fidelity of the learned game",
        "",
        f"Command: `python -m worldmodel.eval {' '.join(argv)}`  ",
        f"{cfg.rollouts} rollouts from held-out tracker episodes, {results['settings']['context']}"
        f" real context frames, then {cfg.horizon} imagined steps with the recorded actions.",
        "",
        text,
        "",
        f"Points (rewards) in these rollouts: real {rewards['real_points']}, predicted "
        f"{rewards['predicted_points']}, matched (same sign within 2 steps) "
        f"{rewards['points_matched']}.",
        "",
        "Does the ball move and bounce? Each rollout's ball track, real vs imagined:",
        "",
        motion_table(results["ball_motion"]),
        "",
        "![fidelity](fidelity_vs_horizon.png)",
        "",
        f"Evaluation took {time.time() - start:.0f} s.",
    ]
    (out / "fidelity_report.md").write_text("\n".join(report) + "\n")
    print(text)
    print(motion_table(results["ball_motion"]))
    print(f"points: {rewards}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
