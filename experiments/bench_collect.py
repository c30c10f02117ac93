"""How fast real 64x64 frames reach the replay buffer: streaming collector vs a plain loop.

    python experiments/bench_collect.py [--seconds 8] [--out experiments/reports]

Baseline: one gymnasium env stepped in a Python loop, each frame area-resized on its own
(what a simple script does). Streaming: the DataModule's collectors (8 envs each, one per
DataLoader worker) at 1 and 2 workers. Both run here, in the same run, so the ratio holds
on a noisy machine even when the absolute numbers don't.
"""

import argparse
import functools
import time
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from worldmodel.data.datamodule import StreamingDataset
from worldmodel.envs import AreaResize, EnvSpec
from worldmodel.envs.policies import RandomPolicy
from worldmodel.eval.report import markdown_table, write_report

COLLECT_PER_BATCH = 32  # env steps per env between batches: the loader is collection-bound


def plain_loop(spec: EnvSpec, seconds: float) -> float:
    env = spec.make()
    resize = AreaResize(env.observation_space.shape[:2], (spec.frame_size, spec.frame_size))
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    frames, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        frames.append(resize(obs))
        if terminated or truncated:
            env.reset()
    return len(frames) / (time.perf_counter() - start)


def streaming(spec: EnvSpec, workers: int, seconds: float, num_envs: int = 8) -> float:
    dataset = StreamingDataset(
        spec,
        functools.partial(RandomPolicy),
        mode="frames",
        batch_size=8,
        seq_len=1,
        num_envs=num_envs,
        buffer_steps=20_000,
        warmup_steps=0,
        collect_steps_per_batch=COLLECT_PER_BATCH,
        seed=0,
    )
    loader = DataLoader(dataset, batch_size=None, num_workers=workers)
    batches = iter(loader)
    next(batches)  # workers started and warm
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(batches)
        count += 1
    elapsed = time.perf_counter() - start
    del batches
    return count * COLLECT_PER_BATCH * num_envs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--out", type=Path, default=Path("experiments/reports"))
    args = parser.parse_args()
    spec = EnvSpec()
    results = {"plain_single_env": plain_loop(spec, args.seconds)}
    for workers in (1, 2):
        results[f"streaming_{workers}_workers"] = streaming(spec, workers, args.seconds)
    base = results["plain_single_env"]
    rows = [[name, f"{fps:,.0f}", f"{fps / base:.2f}x"] for name, fps in results.items()]
    write_report(
        args.out,
        "bench_collect",
        "Collection throughput (64x64 frames reaching the buffer)",
        f"python experiments/bench_collect.py --seconds {args.seconds}",
        markdown_table(["collector", "frames/s", "ratio vs plain loop"], rows),
        results,
    )


if __name__ == "__main__":
    main()
