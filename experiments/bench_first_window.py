"""How long a person waits for the first frame of `make play`, on a clean compile cache.

    python experiments/bench_first_window.py [--repeats 3]

Runs `python -m worldmodel.play headless=true steps=30` in a fresh process with an empty
TORCHINDUCTOR_CACHE_DIR each time (torch.compile then works from scratch, in the
background) and reads the time from start to the first frame shown that play prints.
Writes experiments/reports/bench_first_window.{md,json}.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "reports"


def first_window_s() -> float:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "SDL_VIDEODRIVER": "dummy"}
        result = subprocess.run(
            [sys.executable, "-m", "worldmodel.play", "headless=true", "steps=30"],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=True,
        )
    return float(re.search(r"first frame shown ([\d.]+) s", result.stdout).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times = [first_window_s() for _ in range(args.repeats)]
    result = {"first_frame_s": times, "median_s": float(np.median(times))}
    lines = [
        "# First frame of `make play`, clean compile cache",
        "",
        f"`python experiments/bench_first_window.py --repeats {args.repeats}`: "
        f"median {result['median_s']:.1f} s (runs: {', '.join(f'{t:.1f}' for t in times)}), "
        "from the process start (imports included) to the first frame on the screen.",
    ]
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_first_window.json").write_text(json.dumps(result, indent=2))
    (OUT / "bench_first_window.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
