#!/usr/bin/env bash
# How models/pong_tiny.bundle.ckpt was trained: the same segments, in order. Each tokenizer
# segment resumes the one before it with ckpt_path= (weights, optimizer state and step; the
# learning rate is the configured one); the world model starts from scratch, then each of
# its segments is warm-started from the one before (init_from). About 5.5 hours on 2 CPU
# cores. Run from the repository root (PY=echo prints the commands):
#
#     bash experiments/train_shipped_model.sh [RUN_ROOT]     # default runs/shipped
#
# The records of the runs that made the shipped file (git revision, wall time, metrics per
# segment) are in experiments/reports/training/; experiments/reports/tokenizer_recipe/
# evaluates the tokenizer after each segment. The data stream is seeded but training on
# CPU threads is not bitwise deterministic, so a rerun lands near, not on, those numbers.
set -euo pipefail

ROOT=${1:-runs/shipped}
PY=${PY:-.venv/bin/python}
# The segments below ran with the data defaults of their day: 1 env step collected per batch.
OLD_DATA=(data.collect_steps_per_batch=1 data.warmup_steps=300)
COMMON=(trainer.val_check_interval=250 trainer.log_every_n_steps=10 trainer.enable_progress_bar=false
  "${OLD_DATA[@]}")

# tokenizer SEGMENT_DIR RESUME_FROM MAX_STEPS [overrides...]
# RESUME_FROM: a segment's dir (its last checkpoint) or a checkpoint file under ROOT.
tokenizer() {
  local dir=$1 from=$2 steps=$3
  shift 3
  [[ -z $from || $from == *.ckpt ]] || from=$from/tokenizer/checkpoints/last.ckpt
  "$PY" -m worldmodel.train stage=tokenizer hydra.run.dir="$ROOT/$dir" \
    ${from:+ckpt_path="$ROOT/$from"} tokenizer.max_steps="$steps" "${COMMON[@]}" "$@"
}
LOCAL=(tokenizer.module.model.local_encoder=true)

# Tokenizer, on tracker play (the default policy).
# 1. Global encoder: foreground-weighted L1 + LPIPS + codebook/commitment.
tokenizer tok1 "" 3000 tokenizer.module.loss.moving_weight=0
# 2. + extra L1 weight on moving pixels (the config default, 40).
tokenizer tok2 tok1 4000
# 3. Local encoder: every 16x16 patch encoded on its own (same weights).
tokenizer tok3 tok2 5000 "${LOCAL[@]}"
# 4. + squared error on moving pixels, weight 1, then 4.
tokenizer tok4 tok3 5750 "${LOCAL[@]}" tokenizer.module.loss.moving_l2_weight=1
tokenizer tok5 tok4 7250 "${LOCAL[@]}" tokenizer.module.loss.moving_l2_weight=4
# 5. Lower learning rates: 6e-4 -> 1.5e-4 -> 5e-5.
tokenizer tok6 tok5 8000 "${LOCAL[@]}" tokenizer.module.loss.moving_l2_weight=4 tokenizer.module.lr=1.5e-4
tokenizer tok7 tok6 8750 "${LOCAL[@]}" tokenizer.module.loss.moving_l2_weight=4 tokenizer.module.lr=5e-5
# 6. A codebook per token position: the trained codebook copied to every position (same
#    tokens), then trained on. Segment tok8 ran with dead codes revived after 50 idle steps
#    per book (before the wait scaled with the number of books; 3 x 16 = 48 is the nearest
#    now); tok9 and tok10 with the default (50 x 16 steps). All three revived any number of
#    dead codes per step, copies of one encoder output included (now one code per output).
"$PY" experiments/expand_codebook.py "$ROOT/tok7/tokenizer/checkpoints/last.ckpt" \
  --per-position --out "$ROOT/tok7_per_position.ckpt"
PER_POSITION=("${LOCAL[@]}" tokenizer.module.model.codebook_per_position=true
  tokenizer.module.loss.moving_l2_weight=4)
tokenizer tok8 tok7_per_position.ckpt 9500 "${PER_POSITION[@]}" tokenizer.module.lr=1.5e-4 \
  tokenizer.module.model.dead_after_steps=3
tokenizer tok9 tok8 10750 "${PER_POSITION[@]}" tokenizer.module.lr=1.5e-4
tokenizer tok10 tok9 11500 "${PER_POSITION[@]}" tokenizer.module.lr=5e-5

# World model (+exp=pong_tiny: mixed tracker/random play): 4,000 steps on the step-6,500
# tokenizer, then warm-started (world_model.init_from: weights only, new optimizer) on the
# step-8,750 one, 3,000 steps at 6e-4 and 1,500 at 1.5e-4 (the model shipped before); then
# on the final tokenizer, its token ids first renumbered to agree with the step-8,750 one's
# (experiments/align_token_ids.py), 2,500 steps at 6e-4 and 1,500 at 1.5e-4.
world_model() {
  local dir=$1
  shift
  "$PY" -m worldmodel.train +exp=pong_tiny stage=world_model hydra.run.dir="$ROOT/$dir" \
    trainer.log_every_n_steps=10 trainer.enable_progress_bar=false "$@"
}
world_model wm1 "${OLD_DATA[@]}" tokenizer_ckpt="$ROOT/tok5/tokenizer/checkpoints/step0006500.ckpt" \
  world_model.max_steps=4000
world_model wm2 "${OLD_DATA[@]}" tokenizer_ckpt="$ROOT/tok7/tokenizer/checkpoints/last.ckpt" \
  world_model.init_from="$ROOT/wm1/bundle.ckpt" world_model.max_steps=3000
world_model wm3 "${OLD_DATA[@]}" tokenizer_ckpt="$ROOT/tok7/tokenizer/checkpoints/last.ckpt" \
  world_model.init_from="$ROOT/wm2/world_model/checkpoints/last.ckpt" \
  world_model.module.lr=1.5e-4 world_model.max_steps=1500
"$PY" experiments/align_token_ids.py "$ROOT/wm3/bundle.ckpt" \
  "$ROOT/tok10/tokenizer/checkpoints/last.ckpt" --out "$ROOT/tok10_aligned.ckpt"
world_model wm4 "${OLD_DATA[@]}" tokenizer_ckpt="$ROOT/tok10_aligned.ckpt" \
  world_model.init_from="$ROOT/wm3/bundle.ckpt" world_model.max_steps=2500
world_model wm5 "${OLD_DATA[@]}" tokenizer_ckpt="$ROOT/tok10_aligned.ckpt" \
  world_model.init_from="$ROOT/wm4/world_model/checkpoints/last.ckpt" \
  world_model.module.lr=1.5e-4 world_model.max_steps=1500
# Then fresh data (the DataModule's default: 8 env steps per batch, so the model no longer
# memorises a small replay buffer): 8,000 steps at 3e-4 and 4,500 at 1e-4.
world_model wm6 tokenizer_ckpt="$ROOT/tok10_aligned.ckpt" \
  world_model.init_from="$ROOT/wm5/bundle.ckpt" world_model.module.lr=3e-4 world_model.max_steps=8000
world_model wm7 tokenizer_ckpt="$ROOT/tok10_aligned.ckpt" \
  world_model.init_from="$ROOT/wm6/bundle.ckpt" world_model.module.lr=1e-4 world_model.max_steps=4500
echo "bundle: $ROOT/wm7/bundle.ckpt"
