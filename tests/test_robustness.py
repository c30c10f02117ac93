import json
import signal
import subprocess
import sys
import time

import lightning as L
import pytest
import torch
from fsspec.implementations.local import LocalFileOpener
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.utils.data import DataLoader

from worldmodel.lit.common import NonFiniteLossError
from worldmodel.lit.tokenizer_module import TokenizerModule

from .cli import assert_ok, run_module
from .test_tokenizer import TINY

SMOKE_TOKENIZER = ["+exp=smoke_iris", "stage=tokenizer"]
TRAIN = [sys.executable, "-m", "worldmodel.train", *SMOKE_TOKENIZER]


def test_a_run_killed_mid_way_resumes_from_its_last_checkpoint_at_the_configured_rate(tmp_path):
    run_dir, data = tmp_path / "run", f"paths.data_dir={tmp_path / 'data'}"
    ckpt = run_dir / "tokenizer" / "checkpoints" / "last.ckpt"
    args = [
        *TRAIN,
        f"hydra.run.dir={run_dir}",
        data,
        "tokenizer.max_steps=400",
        "callbacks.checkpoint.every_n_train_steps=5",
        "trainer.val_check_interval=1000",
    ]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not ckpt.exists():
            time.sleep(0.5)
        assert ckpt.exists(), "no checkpoint written before the deadline"
        time.sleep(1.0)
    finally:
        process.send_signal(signal.SIGKILL)  # no chance to clean up
        process.wait()
    killed_at = torch.load(ckpt, weights_only=True)["global_step"]
    assert 5 <= killed_at < 400

    resumed = subprocess.run(
        [
            *args[:-3],
            "tokenizer.max_steps=" + str(killed_at + 6),
            "ckpt_path=last",
            "trainer.val_check_interval=1000",
            "tokenizer.module.lr=1e-4",  # a fine-tuning segment at a lower rate
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = torch.load(ckpt, weights_only=True)
    assert final["global_step"] == killed_at + 6  # continued, not restarted
    assert final["optimizer_states"][0]["state"]  # with the optimizer's moments
    assert final["optimizer_states"][0]["param_groups"][0]["lr"] == 1e-4  # and the new rate
    # The record keeps the killed segment (up to its checkpoint) and adds the resumed one.
    info_path = run_dir / "tokenizer" / "train_info.json"
    info = json.loads(info_path.read_text())
    killed, resumed_segment = info["segments"]
    assert (killed["from_step"], killed["to_step"]) == (0, killed_at)
    assert (resumed_segment["from_step"], resumed_segment["to_step"]) == (killed_at, killed_at + 6)
    assert "ckpt_path=last" in resumed_segment["command"] and "ckpt_path" not in info["command"]
    assert info["wall_time_s"] == pytest.approx(
        killed["wall_time_s"] + resumed_segment["wall_time_s"], abs=0.11
    )
    assert killed["wall_time_s"] > 0 and info["global_step"] == killed_at + 6
    # Resuming a finished stage trains nothing and records nothing more.
    again = subprocess.run(resumed.args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(info_path.read_text())["segments"] == info["segments"]


def fit_on_nan_frames(module: TokenizerModule) -> None:
    frames = torch.full((2, 3, 64, 64), float("nan"))
    trainer = L.Trainer(
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, DataLoader([frames, frames], batch_size=None))


def tiny_module(nonfinite: str) -> TokenizerModule:
    return TokenizerModule(model=TINY, loss={"perceptual_weight": 0.0}, nonfinite=nonfinite)


def test_nan_loss_stops_with_the_step_and_the_loss_term():
    with pytest.raises(NonFiniteLossError, match=r"loss term 'l1' is nan at global step 0"):
        fit_on_nan_frames(tiny_module("stop"))


def test_nan_loss_can_skip_the_batch_instead():
    module = tiny_module("skip")
    before = {k: v.clone() for k, v in module.tokenizer.state_dict().items()}
    fit_on_nan_frames(module)
    after = module.tokenizer.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if "idle_steps" not in k)


def test_lightning_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    """Lightning writes through an fsspec transaction (temp file + rename): a write that
    dies half-way leaves the previous checkpoint intact. This guards that behaviour."""
    target = tmp_path / "last.ckpt"
    checkpoint_io = TorchCheckpointIO()
    checkpoint_io.save_checkpoint({"step": 1}, target)

    def dies_half_way(self, data):
        self.f.write(data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(LocalFileOpener, "write", dies_half_way)
    with pytest.raises(OSError, match="disk full"):
        checkpoint_io.save_checkpoint({"step": 2}, target)
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


@pytest.mark.parametrize("launcher", ["basic", "submitit_local"])
def test_a_two_job_multirun_writes_one_directory_per_job(tmp_path, launcher):
    result = run_module(
        "worldmodel.train",
        *SMOKE_TOKENIZER,
        "-m",  # after the overrides, as in the README's sweep command
        "tokenizer.max_steps=2,3",
        f"hydra/launcher={launcher}",
        f"hydra.sweep.dir={tmp_path}",
        f"paths.data_dir={tmp_path / 'data'}",
        "trainer.val_check_interval=1000",
        timeout=300,
    )
    assert_ok(result)
    for job, steps in (("0", 2), ("1", 3)):
        ckpt = tmp_path / job / "tokenizer" / "checkpoints" / "last.ckpt"
        assert torch.load(ckpt, weights_only=True)["global_step"] == steps
    # submitit ran each job as its own process and kept its logs (as on a SLURM cluster)
    assert (tmp_path / ".submitit").is_dir() == (launcher == "submitit_local")


def train_smoke_tokenizer_3_steps(tmp_path, *overrides: str) -> dict:
    """Train the smoke tokenizer 3 steps with `overrides`; returns its last checkpoint."""
    result = run_module(
        "worldmodel.train",
        *SMOKE_TOKENIZER,
        *overrides,
        "tokenizer.max_steps=3",
        f"hydra.run.dir={tmp_path}",
        f"paths.data_dir={tmp_path / 'data'}",
        "trainer.val_check_interval=1000",
        timeout=300,
    )
    assert_ok(result)
    ckpt = torch.load(tmp_path / "tokenizer" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 3
    return ckpt


def test_two_ddp_processes_train_on_cpu(tmp_path):
    train_smoke_tokenizer_3_steps(
        tmp_path,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
    )
    assert (tmp_path / "train_ddp_process_1.log").exists()  # a second rank really ran


def test_bf16_mixed_precision_trains_on_cpu(tmp_path):
    ckpt = train_smoke_tokenizer_3_steps(tmp_path, "trainer.precision=bf16-mixed")
    assert all(
        v.dtype == torch.float32 for v in ckpt["state_dict"].values() if v.is_floating_point()
    )


def test_optuna_search_runs_trials_and_minimises_the_returned_loss(tmp_path):
    result = run_module(
        "worldmodel.train",
        *SMOKE_TOKENIZER,
        "-m",
        "hparams_search=world_model_optuna",
        "hydra.sweeper.n_trials=2",
        "tokenizer.max_steps=6",
        "tokenizer.module.lr=interval(0.0005,0.002)",  # a search dimension from the CLI
        f"hydra.sweep.dir={tmp_path}",
        f"paths.data_dir={tmp_path / 'data'}",
        timeout=300,
    )
    assert_ok(result)
    best = (tmp_path / "optimization_results.yaml").read_text()
    assert "best_value" in best and "tokenizer.module.lr" in best
