import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from worldmodel.bundle import load_bundle
from worldmodel.train import CONFIG_DIR

from .cli import run_module


def test_smoke_experiment_trains_both_stages_and_writes_a_bundle(smoke_run):
    bundle_path = smoke_run / "bundle.ckpt"
    payload = torch.load(bundle_path, weights_only=True)  # plain tensors and dicts only
    assert payload["format"] == "worldmodel-bundle"
    bundle = load_bundle(bundle_path)
    assert bundle.spec.game_id == "ALE/Pong-v5"
    assert bundle.action_meanings[:2] == ("NOOP", "FIRE")
    assert "tokenizer" in bundle.train_config
    for stage in ("tokenizer", "world_model"):
        assert (smoke_run / stage / "checkpoints" / "last.ckpt").exists()
        assert (smoke_run / stage / "version_0" / "metrics.csv").exists()
    media = {p.name.split("_0")[0] for p in smoke_run.rglob("media/*.png")}
    assert {"val_reconstructions", "val_imagined_vs_real"} <= media


@pytest.mark.parametrize("exp", ["smoke", "pong_tiny", "pong"])
def test_experiment_configs_compose_and_build(exp):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"+exp={exp}", "paths.root=.", "paths.output_dir=."])
    assert cfg.tokenizer.module._target_.endswith("TokenizerModule")
    spec = instantiate(cfg.env)
    assert spec.frame_size == 64
    policy = instantiate(cfg.policy)(action_meanings=spec.action_meanings(), num_envs=2, seed=0)
    assert hasattr(policy, "act")


def test_a_config_typo_and_an_unknown_experiment_are_clear_errors():
    typo = run_module("worldmodel.train", "tokenizer.max_stepz=3", timeout=120)
    assert typo.returncode != 0 and "max_stepz" in typo.stderr
    unknown = run_module("worldmodel.train", "+exp=no_such_exp", timeout=120)
    assert unknown.returncode != 0 and "no_such_exp" in unknown.stderr
