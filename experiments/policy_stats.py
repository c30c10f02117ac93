"""How much of Pong each data policy shows the model: points won and lost, ball returns and
rally length per 1000 steps, on the real emulator.

    python experiments/policy_stats.py [--steps 2000] [--envs 4]
"""

import argparse
import functools
from pathlib import Path

from worldmodel.envs import EnvSpec
from worldmodel.envs.policies import MixedPolicy, RandomPolicy, TrackerPolicy
from worldmodel.envs.pong_stats import policy_stats
from worldmodel.eval.report import markdown_table, write_report

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
    header = ["policy", "points won /1k", "points lost /1k", "ball returns /1k", "steps per point"]
    rows = [
        [
            name,
            f"{r['points_won_per_1k']:.1f}",
            f"{r['points_lost_per_1k']:.1f}",
            f"{r['returns_per_1k']:.1f}",
            f"{r['mean_rally_steps']:.0f}",
        ]
        for name, r in results.items()
    ]
    write_report(
        args.out,
        "policy_stats",
        "Data policies on real Pong",
        f"python experiments/policy_stats.py --steps {args.steps} --envs {args.envs}",
        markdown_table(header, rows),
        results,
    )


if __name__ == "__main__":
    main()
