#!/usr/bin/env bash
# One GPU run, start to report: train +exp=pong for a fixed time (STAGE_SECONDS per stage,
# tokenizer then world model, default 210 s each: ~8 minutes with start-up), evaluate the
# bundle, and leave the report, the training record and the bundle (split into parts under 16 MiB)
# in $OUT (at most 8 files).
#
#   bash experiments/gpu/fetch_wheels.sh                 # here, once
#   device run: bash experiments/gpu/train_and_eval.sh   (carry: .gpu_wheels)
#   rejoin the bundle: cat bundle.ckpt.part-* > bundle.ckpt
#
# On CPU, for a check of the script itself (tests/test_gpu_script.py):
#   EXP=smoke STAGE_SECONDS=20 DEVICE=cpu EVAL_ARGS="rollouts=2 ..." OUT=/tmp/g
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:?set OUT to the folder for the results}
EXP=${EXP:-pong}
STAGE_SECONDS=${STAGE_SECONDS:-210}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
WORK=${WORK:-runs/gpu}
EVAL_ARGS=${EVAL_ARGS:-}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 WANDB_MODE=offline

# Only where they are missing: the wheels are for the GPU machine's Python 3.12.
if ! "$PY" -c "import ale_py, gymnasium, hydra, einops, lpips" 2>/dev/null && [ -d .gpu_wheels ]; then
  "$PY" -m pip install --quiet --no-index --no-deps --no-build-isolation .gpu_wheels/*
fi
mkdir -p "$OUT" "$WORK"
"$PY" - <<'PY' | tee "$OUT/run.log"
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else "")
PY

# logger=csv: no W&B account there. max_time stops each stage; its checkpoint and the
# bundle are written as at max_steps.
MAX_TIME=$(printf '00:%02d:%02d:%02d' $((STAGE_SECONDS / 3600)) $((STAGE_SECONDS % 3600 / 60)) \
  $((STAGE_SECONDS % 60)))  # Lightning's DD:HH:MM:SS
"$PY" -m worldmodel.train +exp="$EXP" logger=csv hydra.run.dir="$WORK/run" \
  "++trainer.max_time='$MAX_TIME'" trainer.enable_progress_bar=false 2>&1 | tee -a "$OUT/run.log"

"$PY" -m worldmodel.eval bundle="$WORK/run/bundle.ckpt" out="$WORK/eval" device="$DEVICE" \
  compile=false $EVAL_ARGS 2>&1 | tail -n 120 | tee -a "$OUT/run.log"

cp "$WORK/eval/fidelity_report.md" "$WORK/eval/fidelity.json" "$WORK/eval/contact_sheet.png" "$OUT/"
"$PY" - "$WORK/run" "$OUT/train_info.json" <<'PY'
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
info = {s: json.loads((run / s / "train_info.json").read_text()) for s in ("tokenizer", "world_model")}
Path(sys.argv[2]).write_text(json.dumps(info, indent=2))
PY
split -b 16000k "$WORK/run/bundle.ckpt" "$OUT/bundle.ckpt.part-"
ls -la "$OUT"
