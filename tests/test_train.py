import json
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from worldmodel.bundle import BundleError, load_bundle, save_bundle
from worldmodel.lit.checkpoints import load_tokenizer, warm_start_world_model
from worldmodel.models.world_model import WorldModel
from worldmodel.train import CONFIG_DIR

from .cli import assert_ok, run_experiment_script, run_module

CODEBOOK = "tokenizer.quantizer.codebook.weight"
IDLE = "tokenizer.quantizer.idle_steps"


@pytest.mark.parametrize(
    ("run", "kind", "token_metrics", "world_model_metrics"),
    [
        (
            "smoke_run",
            "delta",
            {"val/shuffled_token_ratio", "val/codebook_usage"},
            {"val/ball_accuracy"},  # the ball slot
        ),
        ("smoke_iris_run", "iris", {"val/codebook_usage", "val/token_id_usage"}, set()),
    ],
)
def test_smoke_experiment_trains_both_stages_and_writes_a_bundle(
    request, run, kind, token_metrics, world_model_metrics
):
    root = request.getfixturevalue(run)
    bundle_path = root / "bundle.ckpt"
    payload = torch.load(bundle_path, weights_only=True)  # plain tensors and dicts only
    assert payload["format"] == "worldmodel-bundle" and payload["kind"] == kind
    bundle = load_bundle(bundle_path)
    assert bundle.kind == kind and bundle.spec.game_id == "ALE/Pong-v5"
    assert bundle.action_meanings[:2] == ("NOOP", "FIRE")
    assert "tokenizer" in bundle.train_config
    for stage in ("tokenizer", "world_model"):
        assert (root / stage / "checkpoints" / "last.ckpt").exists()
        assert (root / stage / "version_0" / "metrics.csv").exists()
    header = (root / "tokenizer/version_0/metrics.csv").read_text().splitlines()[0]
    assert token_metrics <= set(header.split(","))
    world_model = (root / "world_model/version_0/metrics.csv").read_text().splitlines()[0]
    assert {"val/loss", "val/reward_recall", *world_model_metrics} <= set(world_model.split(","))
    media = {p.name.split("_0")[0] for p in root.rglob("media/*.png")}
    assert {"val_reconstructions", "val_imagined_vs_real"} <= media


@pytest.mark.parametrize(
    "exp", ["smoke", "smoke_iris", "pong_tiny", "pong_tiny_iris", "pong", "pong_iris"]
)
def test_experiment_configs_compose_and_build(exp):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"+exp={exp}", "paths.root=.", "paths.output_dir=."])
    assert cfg.tokenizer.module._target_.endswith("TokenizerModule")
    spec = instantiate(cfg.env)
    assert spec.frame_size == 64
    policy = instantiate(cfg.policy)(action_meanings=spec.action_meanings(), num_envs=2, seed=0)
    assert hasattr(policy, "act")


def test_the_sweep_searches_settings_the_recipe_has():
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["+exp=pong_tiny", "hparams_search=world_model_optuna"],
            return_hydra_config=True,
        )
    params = cfg.hydra.sweeper.params
    assert params
    for key in params:
        assert OmegaConf.select(cfg, key) is not None, key


def test_a_config_typo_and_an_unknown_experiment_are_clear_errors():
    typo = run_module("worldmodel.train", "tokenizer.max_stepz=3", timeout=120)
    assert typo.returncode != 0 and "max_stepz" in typo.stderr
    unknown = run_module("worldmodel.train", "+exp=no_such_exp", timeout=120)
    assert unknown.returncode != 0 and "no_such_exp" in unknown.stderr


def test_an_unknown_game_id_is_one_line_before_any_work(tmp_path):
    result = run_module(
        "worldmodel.train", "env.game_id=ALE/Pnog-v5", f"hydra.run.dir={tmp_path}", timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        line for line in result.stderr.strip().splitlines() if line.startswith("error: ")
    ]
    assert "Pnog" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "tokenizer").exists()  # nothing was started


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without GPU")
def test_the_gpu_recipe_on_a_machine_without_one_says_what_to_run_instead(tmp_path):
    result = run_module("worldmodel.train", "+exp=pong", f"hydra.run.dir={tmp_path}", timeout=120)
    assert result.returncode == 2
    assert "trainer=cpu" in result.stderr and "+exp=pong_tiny" in result.stderr
    assert "Traceback" not in result.stderr


def test_world_model_warm_starts_from_a_bundle_but_resumes_only_on_its_own_tokens(
    smoke_iris_run, tmp_path
):
    bundle, wm_ckpt = (
        smoke_iris_run / "bundle.ckpt",
        smoke_iris_run / "world_model/checkpoints/last.ckpt",
    )
    stage = ["+exp=smoke_iris", "stage=world_model", f"paths.data_dir={smoke_iris_run / 'data'}"]

    # init_from: the smoke run's weights, unchanged by two steps at learning rate 0.
    warm = run_module(
        "worldmodel.train",
        *stage,
        f"tokenizer_ckpt={bundle}",
        f"world_model.init_from={bundle}",
        "world_model.module.lr=0.0",
        "world_model.max_steps=2",
        f"hydra.run.dir={tmp_path / 'warm'}",
    )
    assert_ok(warm)
    started = load_bundle(tmp_path / "warm" / "bundle.ckpt").world_model.state_dict()
    trained = load_bundle(bundle).world_model.state_dict()
    assert all(torch.equal(started[k], trained[k]) for k in trained)
    # Resuming that run does not warm-start again (the file may be gone by then).
    resumed = run_module(
        "worldmodel.train",
        *stage,
        f"tokenizer_ckpt={bundle}",
        f"world_model.init_from={tmp_path / 'moved_away.ckpt'}",
        "world_model.max_steps=4",
        "ckpt_path=last",
        f"hydra.run.dir={tmp_path / 'warm'}",
    )
    assert_ok(resumed)
    assert torch.load(tmp_path / "warm/world_model/checkpoints/last.ckpt")["global_step"] == 4

    # Resuming on the tokens it was trained on continues; on another tokenizer's, refuses.
    resume = [*stage, f"ckpt_path={wm_ckpt}", "world_model.max_steps=14"]
    same = run_module(
        "worldmodel.train",
        *resume,
        f"tokenizer_ckpt={smoke_iris_run / 'tokenizer/checkpoints/last.ckpt'}",
        f"hydra.run.dir={tmp_path / 'same'}",
    )
    assert_ok(same)
    assert torch.load(tmp_path / "same/world_model/checkpoints/last.ckpt")["global_step"] == 14
    original = load_bundle(bundle)
    other = original.tokenizer
    with torch.no_grad():
        other.quantizer.codebook.weight.add_(0.1)  # other codes: other tokens
    other_path = save_bundle(
        tmp_path / "other_tokenizer.ckpt", other, None, original.spec, original.action_meanings
    )
    refused = run_module(
        "worldmodel.train",
        *resume,
        f"tokenizer_ckpt={other_path}",
        f"hydra.run.dir={tmp_path / 'other'}",
    )
    assert refused.returncode != 0
    assert "trained on a different tokenizer" in refused.stderr
    assert "world_model.init_from" in refused.stderr


def test_tokenizer_warm_starts_from_a_bundle_with_its_weights(smoke_iris_run, tmp_path):
    bundle = smoke_iris_run / "bundle.ckpt"
    # The bundle's weights, unchanged by two steps at learning rate 0 (no code revived).
    warm = run_module(
        "worldmodel.train",
        "+exp=smoke_iris",
        "stage=tokenizer",
        f"paths.data_dir={smoke_iris_run / 'data'}",
        f"tokenizer.init_from={bundle}",
        "tokenizer.module.lr=0.0",
        "tokenizer.module.model.revive_dead_codes=false",
        "tokenizer.max_steps=2",
        f"hydra.run.dir={tmp_path / 'warm'}",
    )
    assert_ok(warm)
    started = load_tokenizer(tmp_path / "warm/tokenizer/checkpoints/last.ckpt").state_dict()
    trained = load_tokenizer(bundle).state_dict()
    assert all(torch.equal(started[k], trained[k]) for k in trained if not k.endswith("idle_steps"))
    # A tokenizer of other sizes: a clear error naming what does not fit.
    wrong = run_module(
        "worldmodel.train",
        "+exp=smoke_iris",
        "stage=tokenizer",
        f"paths.data_dir={smoke_iris_run / 'data'}",
        f"tokenizer.init_from={bundle}",
        "tokenizer.module.model.code_dim=8",
        f"hydra.run.dir={tmp_path / 'wrong'}",
    )
    assert wrong.returncode != 0
    assert "does not fit tokenizer's config" in wrong.stderr


def run_experiment(script: str, *args) -> None:
    assert_ok(run_experiment_script(script, *args))


def test_warm_starting_from_a_world_model_of_another_size_says_what_does_not_fit(smoke_iris_run):
    path = smoke_iris_run / "bundle.ckpt"
    trained = load_bundle(path).world_model.cfg
    wider = WorldModel(replace(trained, d_model=2 * trained.d_model))
    with pytest.raises(BundleError, match=r"does not fit.*size mismatch"):
        warm_start_world_model(wider, str(path))


def test_world_model_gap_reports_held_out_and_fresh_play_accuracy(smoke_iris_run, tmp_path):
    run_experiment(
        "world_model_gap.py",
        smoke_iris_run / "bundle.ckpt",
        "--exp",
        "smoke_iris",
        "--data-dir",
        tmp_path / "data",
        "--out",
        tmp_path / "out",
    )
    results = json.loads((tmp_path / "out/world_model_gap.json").read_text())
    assert len(results) == 2
    for row in results.values():
        assert 0 <= row["changed_token_accuracy"] <= 1 and 0 <= row["token_accuracy"] <= 1


def test_tokenizer_report_scores_a_bundle_with_the_issue_metrics(smoke_iris_run, tmp_path):
    out = tmp_path / "report"
    run_experiment(
        "tokenizer_report.py",
        smoke_iris_run / "bundle.ckpt",
        "--out",
        out,
        "--data-dir",
        tmp_path / "val",
        "--episodes",
        "1",
        "--max-steps",
        "64",
    )
    metrics = json.loads((out / "tokenizer_metrics.json").read_text())
    for key in (
        "ball_recall",
        "ball_false_positive_rate",
        "paddle_y_error_px",
        "psnr_db",
        "codebook_usage",
        "ball_recall_unquantized",
    ):
        assert isinstance(metrics[key], float), key  # nan where the smoke model draws no paddle
    for key in ("ball_recall", "ball_recall_unquantized", "codebook_usage"):
        assert 0 <= metrics[key] <= 1, key
    assert metrics["frames"] == 63  # 64 steps, less the first frame (another palette)
    report = (out / "tokenizer_report.md").read_text()
    assert "| ball_recall |" in report and (out / "tokenizer_grid.png").exists()


def test_ball_code_budget_covers_balls_within_a_pixel_and_writes_its_report(tmp_path):
    experiments = CONFIG_DIR.parent / "experiments"
    sys.path.insert(0, str(experiments))  # the experiments import each other as scripts
    try:
        from ball_code_budget import greedy_cover
    finally:
        sys.path.remove(str(experiments))
    points = np.array([[0.0, 0.0], [0.5, 0.0], [1.2, 0.0], [5.0, 5.0]])
    picks = greedy_cover(points)
    assert [sorted(covered.tolist()) for _, covered in picks] == [[0, 1, 2], [3]]
    assert np.array_equal(picks[0][0], [0.5, 0.0])

    out = tmp_path / "report"
    run_experiment(
        "ball_code_budget.py", "--episodes", "1", "--data-dir", tmp_path / "data", "--out", out
    )
    results = json.loads((out / "ball_code_budget.json").read_text())
    # The open field needs one ball-free code (the empty patch); every ball is in some patch.
    assert results["1,1"]["ball_free_contents"] == 1
    assert 0.0 < results["all"]["held_out_kept"] <= results["all"]["sample_kept"] <= 1.0


@pytest.mark.parametrize("file", ["bundle.ckpt", "tokenizer/checkpoints/last.ckpt"])
def test_delta_token_probe_reports_what_the_tokens_say_about_the_ball(smoke_run, tmp_path, file):
    out = tmp_path / "probe"
    run_experiment("delta_token_probe.py", smoke_run / file, "--steps", 80, "--out", out)
    results = json.loads((out / "delta_token_probe.json").read_text())
    assert results["triples"] > 0  # tracker play has balls in flight within 80 steps
    for swap in ("swap_1", "swap_5", "swap_50", "swap_random"):
        assert 0 <= results[swap]["found"] <= 1, swap
    # The frame embedding is the world model's: a tokenizer's checkpoint has none.
    assert len(results.get("embedding_probe_px", [])) == (2 if file == "bundle.ckpt" else 0)
    assert "absolute in" in (out / "delta_token_probe.md").read_text()
