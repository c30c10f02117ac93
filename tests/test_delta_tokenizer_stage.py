"""The context-aware tokenizer's training stage: pairs cut from segments, and one real
`python -m worldmodel.train stage=tokenizer tokenizer=delta` run end to end."""

import csv
import json
import subprocess
import sys

import pytest
import torch

from worldmodel.lit.delta_tokenizer_module import consecutive_pairs, cut_pairs

from .cli import run_module

TINY_RUN = [
    "stage=tokenizer",
    "tokenizer=delta",
    "logger=csv",
    "data.num_envs=2",
    "data.warmup_steps=40",
    "data.num_workers=0",
    "data.buffer_steps=4000",
    "data.val_episodes=1",
    "data.val_max_steps=64",
    "tokenizer.module.model.channels=4",
    "tokenizer.module.model.latent_channels=8",
    "tokenizer.module.model.context_channels=4",
    "tokenizer.module.model.num_codes=32",
    "tokenizer.module.model.code_dim=8",
    "tokenizer.module.context_gap=3",
    "tokenizer.batch_size=8",
    "tokenizer.max_steps=12",
    "trainer.val_check_interval=6",
    "+trainer.limit_val_batches=2",
    "trainer.log_every_n_steps=2",
    "trainer.enable_progress_bar=false",
]


def segments(mask: list[list[bool]]) -> dict:
    mask = torch.tensor(mask)
    b, t = mask.shape
    # Frame (i, j) is filled with 10 * i + j, action (i, j) is 100 + 10 * i + j.
    ids = 10 * torch.arange(b)[:, None] + torch.arange(t)[None, :]
    frames = ids[..., None, None, None].expand(b, t, 2, 2, 3).to(torch.uint8)
    return {"frames": frames, "actions": 100 + ids, "mask": mask}


def test_pairs_take_the_gap_the_segment_allows_and_the_action_before_the_frame():
    batch = segments([[True] * 4, [True, True, False, False], [True, False, False, False]])
    pairs = cut_pairs(batch, torch.tensor([3, 3, 2]))
    # Segment 0: frame 3 after frame 0; segment 1 ends after frame 1 (gap shrinks to 1);
    # segment 2 has no second frame and is left out.
    assert pairs.previous[:, 0, 0, 0].tolist() == [0, 10]
    assert pairs.frames[:, 0, 0, 0].tolist() == [3, 11]
    assert pairs.actions.tolist() == [102, 110]
    steps = consecutive_pairs(batch)
    assert steps.previous[:, 0, 0, 0].tolist() == [0, 1, 2, 10]
    assert steps.frames[:, 0, 0, 0].tolist() == [1, 2, 3, 11]
    assert steps.actions.tolist() == [100, 101, 102, 110]


def test_the_delta_tokenizer_stage_trains_and_logs_whether_its_tokens_are_used(tmp_path):
    result = run_module(
        "worldmodel.train",
        *TINY_RUN,
        f"hydra.run.dir={tmp_path}",
        f"paths.data_dir={tmp_path / 'data'}",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "tokenizer" / "checkpoints" / "last.ckpt").exists()
    rows = list(csv.DictReader((tmp_path / "tokenizer" / "version_0" / "metrics.csv").open()))
    logged = {k for row in rows for k, v in row.items() if v}
    assert {"val/shuffled_token_ratio", "val/codebook_usage", "train/worst_pixel"} <= logged
    assert json.loads((tmp_path / "tokenizer" / "train_info.json").read_text())["global_step"] == 12
    report = subprocess.run(
        [
            sys.executable,
            "experiments/delta_tokenizer_report.py",
            str(tmp_path / "tokenizer" / "checkpoints" / "last.ckpt"),
            "--out",
            str(tmp_path / "r"),
            "--data-dir",
            str(tmp_path / "data" / "val-report"),
            "--chain",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    metrics = json.loads((tmp_path / "r" / "delta_tokenizer_metrics.json").read_text())
    assert {"ball_recall", "shuffled_token_ratio", "codebook_usage"} <= set(
        metrics["teacher_forced"]
    )
    assert set(metrics["chained"]) == {"h=1", "h=3"}


@pytest.mark.parametrize(
    ("override", "message"),
    [("stage=all", "stage=tokenizer"), ("tokenizer.module.model.num_actions=4", "6 actions")],
)
def test_delta_settings_that_cannot_work_are_one_line_before_any_work(tmp_path, override, message):
    args = [a for a in TINY_RUN if not a.startswith("stage=")]
    stage = [] if override.startswith("stage=") else ["stage=tokenizer"]
    result = run_module(
        "worldmodel.train", *args, *stage, override, f"hydra.run.dir={tmp_path}", timeout=120
    )
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "tokenizer").exists()
