"""How much of Pong each data policy shows the model: points won and lost, ball returns and
rally length per 1000 steps, on the real emulator.

    python experiments/policy_stats.py [--steps 2000] [--envs 4]
"""

import argparse
import functools
import json
from pathlib import Path

from worldmodel.envs import EnvSpec
from worldmodel.envs.policies import MixedPolicy, RandomPolicy, TrackerPolicy
from worldmodel.envs.pong_stats import policy_stats

POLICIES = {
    "random": RandomPolicy,
    "tracker (conf/policy/tracker.yaml)": functools.partial(
        TrackerPolicy, epsilon=0.02, aim_noise=6.0
    ),
    "tracker, no noise": functools.partial(TrackerPolicy, epsilon=0.0, aim_noise=0.0),
    "mixed 80/20 (conf/policy/mixed.yaml)": functools.partial(
        MixedPolicy,
        policies=[functools.partial(TrackerPolicy, epsilon=0.02, aim_noise=6.0), RandomPolicy],
        weights=[0.8, 0.2],
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--envs", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("experiments/reports"))
    args = parser.parse_args()
    results = {
        name: policy_stats(EnvSpec(), make, args.steps, args.envs, seed=0)
        for name, make in POLICIES.items()
    }
    lines = [
        "| policy | points won /1k | points lost /1k | ball returns /1k | steps per point |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['points_won_per_1k']:.1f} | {r['points_lost_per_1k']:.1f} "
            f"| {r['returns_per_1k']:.1f} | {r['mean_rally_steps']:.0f} |"
        )
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "policy_stats.json").write_text(json.dumps(results, indent=2))
    (args.out / "policy_stats.md").write_text(
        f"# Data policies on real Pong\n\nCommand: `python experiments/policy_stats.py "
        f"--steps {args.steps} --envs {args.envs}` ({args.steps * args.envs} steps each)\n\n"
        f"{table}\n"
    )


if __name__ == "__main__":
    main()
