"""The world-model stage over context-aware tokens: tokens cached by the data pipeline are
the ones the module would make, a run resumes where it stopped, and settings that cannot
work are one line before any work."""

import dataclasses

import numpy as np
import pytest
import torch

from worldmodel.bundle import load_bundle
from worldmodel.data.datamodule import FrameEncoder
from worldmodel.data.episode import Episode
from worldmodel.engine import LearnedGame
from worldmodel.envs.atari import AtariBatch
from worldmodel.lit.delta_world_model_module import Steps
from worldmodel.models.delta_tokenizer import DeltaTokenizer, DeltaTokenizerConfig
from worldmodel.models.score_slot import NOBODY

from .batches import segments
from .cli import assert_ok, run_module


@pytest.mark.parametrize("slots", [{}, {"ball_slot": True, "score_slot": True}])
def test_tokens_the_data_pipeline_stores_are_the_ones_the_module_would_make(slots):
    torch.manual_seed(0)
    tokenizer = DeltaTokenizer(
        DeltaTokenizerConfig(
            channels=4, latent_channels=8, context_channels=4, num_codes=32, **slots
        )
    ).eval()
    rng = np.random.default_rng(0)
    t = 6
    episode = Episode(
        frames=rng.integers(0, 256, (t, 64, 64, 3), dtype=np.uint8),
        actions=rng.integers(0, 6, t),
        rewards=np.zeros(t, np.float32),
        terminated=np.eye(t, dtype=bool)[-1],
        truncated=np.zeros(t, bool),
    )
    stored = torch.from_numpy(FrameEncoder(tokenizer).episode(episode))
    batch = segments(
        torch.ones(1, t, dtype=torch.bool),
        frames=torch.from_numpy(episode.frames)[None],
        actions=torch.from_numpy(episode.actions)[None],
        terminated=torch.from_numpy(episode.terminated)[None],
    )
    made = Steps.of(batch, tokenizer)
    cached = Steps.of(dataclasses.replace(batch, tokens=stored[None]), tokenizer)
    # Step t's tokens are frame t+1's; the last step has no next frame and no tokens.
    assert torch.equal(made.tokens, cached.tokens)
    assert made.next_frames[0].tolist() == [True] * (t - 1) + [False]
    assert made.tokens[0, -1].eq(0).all()
    # With the score slot, who scored is split off the tokens the world model reads.
    assert made.tokens.shape[-1] == tokenizer.cfg.input_tokens
    if slots:
        assert torch.equal(made.score_changes, cached.score_changes)
        assert made.score_changes.eq(NOBODY).all()  # noise frames: no score to read
    else:
        assert made.score_changes is None


def test_a_delta_world_model_resumes_at_its_step_and_plays_with_its_ball_motion(
    tmp_path, smoke_run
):
    tokenizer = smoke_run / "tokenizer" / "checkpoints" / "last.ckpt"
    args = [
        "+exp=smoke",
        "stage=world_model",
        f"tokenizer_ckpt={tokenizer}",
        f"hydra.run.dir={tmp_path}",
        f"paths.data_dir={smoke_run / 'data'}",
    ]
    assert_ok(run_module("worldmodel.train", *args, "world_model.max_steps=4"))
    assert_ok(run_module("worldmodel.train", *args, "world_model.max_steps=8", "ckpt_path=last"))
    checkpoint = torch.load(tmp_path / "world_model/checkpoints/last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 8
    bundle = load_bundle(tmp_path / "bundle.ckpt")
    assert bundle.world_model.motion is not None
    game = LearnedGame(bundle.tokenizer, bundle.world_model, seed=0)
    envs = AtariBatch(bundle.spec, num_envs=2, seed=0)
    game.reset(torch.from_numpy(envs.reset()))
    envs.close()
    for action in range(3):
        frames = game.step(torch.tensor([action, 0]))[0]
    assert frames.shape == (2, 64, 64, 3)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["world_model=tiny"], "different designs"),
        (["world_model.init_from=x.ckpt"], "init_from"),
        (
            ["tokenizer.module.model.ball_slot=false"],
            "ball_motion=false",
        ),
    ],
)
def test_delta_world_model_settings_that_cannot_work_are_one_line(tmp_path, overrides, message):
    result = run_module(
        "worldmodel.train", "+exp=smoke", *overrides, f"hydra.run.dir={tmp_path}", timeout=120
    )
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not (tmp_path / "tokenizer").exists()


def test_an_iris_tokenizer_under_a_delta_world_model_is_one_line(tmp_path, smoke_iris_run):
    result = run_module(
        "worldmodel.train",
        "+exp=smoke",
        "stage=world_model",
        f"tokenizer_ckpt={smoke_iris_run / 'tokenizer/checkpoints/last.ckpt'}",
        f"hydra.run.dir={tmp_path}",
        timeout=120,
    )
    assert result.returncode == 2 and "iris tokenizer" in result.stderr
