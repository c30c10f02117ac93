"""experiments/gpu/train_and_eval.sh, the one-shot GPU run, checked on CPU with the smoke
recipe: it trains for its fixed time, evaluates, and leaves at most 8 files of at most
16 MiB in $OUT, the bundle rejoining from its parts."""

import os
import subprocess
import sys
from pathlib import Path

from worldmodel.bundle import load_bundle

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_script_trains_evaluates_and_leaves_a_small_report(tmp_path):
    out = tmp_path / "out"
    env = {
        **os.environ,
        "EXP": "smoke",
        "STAGE_SECONDS": "30",
        "DEVICE": "cpu",
        "PYTHON": sys.executable,
        "OUT": str(out),
        "WORK": str(tmp_path / "work"),
        "EVAL_ARGS": "rollouts=2 horizon=3 closed_loop_steps=30 dreams=1 episodes=1 "
        f"max_steps=64 data_dir={tmp_path / 'work/run/data/val'}",
    }
    result = subprocess.run(
        ["bash", str(ROOT / "experiments/gpu/train_and_eval.sh"), f"paths.data_dir={tmp_path}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    files = sorted(out.iterdir())
    assert len(files) <= 8 and all(f.stat().st_size <= 16 * 2**20 for f in files)
    assert {"fidelity_report.md", "fidelity.json", "train_info.json", "run.log"} <= {
        f.name for f in files
    }
    bundle = tmp_path / "bundle.ckpt"
    bundle.write_bytes(b"".join(f.read_bytes() for f in files if ".part-" in f.name))
    assert load_bundle(bundle).kind == "delta"
