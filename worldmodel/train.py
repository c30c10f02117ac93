"""The Hydra entry point: `python -m worldmodel.train [+exp=NAME] [overrides]`.

Two stages, as in IRIS but not interleaved: the tokenizer trains first and is frozen, then
the world model learns on its (stable) tokens. `stage=` runs one of them.
"""

import json
import logging
import subprocess
import sys
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from worldmodel.bundle import BundleError, kind_of, save_bundle
from worldmodel.envs import EnvSpec
from worldmodel.lit.checkpoints import load_tokenizer, warm_start_tokenizer, warm_start_world_model
from worldmodel.lit.training_record import TrainingRecord
from worldmodel.models.delta_tokenizer import DeltaTokenizer
from worldmodel.tracking import finish_loggers

log = logging.getLogger(__name__)
CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf"
STAGES = ("tokenizer", "world_model")


def make_loggers(cfg: DictConfig, stage: str) -> list:
    if not cfg.get("logger"):
        return []
    return [instantiate(cfg.logger, name=stage)]


def make_callbacks(cfg: DictConfig, dirpath: Path) -> list:
    callbacks = []
    for name, callback_cfg in (cfg.get("callbacks") or {}).items():
        extra = {"dirpath": str(dirpath)} if name == "checkpoint" else {}
        callbacks.append(instantiate(callback_cfg, **extra))
    return callbacks


def checkpoint_dir(cfg: DictConfig, stage: str) -> Path:
    return Path(cfg.paths.output_dir) / stage / "checkpoints"


def resume_path(cfg: DictConfig, stage: str) -> str | None:
    """`ckpt_path=last` resumes from this stage's last.ckpt if there is one."""
    if cfg.ckpt_path == "last":
        last = checkpoint_dir(cfg, stage) / "last.ckpt"
        return str(last) if last.exists() else None
    return cfg.ckpt_path


def git_revision() -> str:
    """The commit the code came from, "-dirty" when tracked files had uncommitted changes."""
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=7"],
            capture_output=True,
            text=True,
            cwd=CONFIG_DIR,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def fit_stage(
    cfg: DictConfig, stage: str, module: L.LightningModule, spec: EnvSpec, **data_overrides
) -> tuple[L.Trainer, Path]:
    """Train one stage on the streaming data; returns the trainer and its last checkpoint."""
    stage_cfg = cfg[stage]
    # Seeded per stage: the world model starts the same whether or not a tokenizer stage
    # ran before it in this process.
    L.seed_everything(cfg.seed + STAGES.index(stage), workers=True)
    stage_dir, checkpoints = Path(cfg.paths.output_dir) / stage, checkpoint_dir(cfg, stage)
    datamodule = instantiate(cfg.data, env=spec, batch_size=stage_cfg.batch_size, **data_overrides)
    loggers = make_loggers(cfg, stage)
    record = TrainingRecord("python -m worldmodel.train " + " ".join(sys.argv[1:]), git_revision())
    try:
        trainer: L.Trainer = instantiate(
            cfg.trainer,
            max_steps=stage_cfg.max_steps,
            default_root_dir=str(stage_dir),
            logger=loggers or False,
            callbacks=[*make_callbacks(cfg, checkpoints), record],
        )
        for logger in loggers:
            logger.log_hyperparams(
                {
                    "config": OmegaConf.to_container(cfg, resolve=True),
                    "git_revision": record.git_revision,
                    "trainable_parameters": sum(
                        p.numel() for p in module.parameters() if p.requires_grad
                    ),
                }
            )
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_path(cfg, stage))
    finally:
        finish_loggers(loggers)
    last = checkpoints / "last.ckpt"
    trainer.save_checkpoint(last)
    if trainer.is_global_zero:  # for reports and for the shipped model's record
        info = record.summary(policy=cfg.policy._target_)
        (stage_dir / "train_info.json").write_text(json.dumps(info, indent=2))
    log.info("%s stage done: %s", stage, last)
    return trainer, last


def is_delta(group: DictConfig) -> bool:
    """Whether a tokenizer or world_model config group is the context-aware (Delta) design."""
    return group.module.get("_target_", "").split(".")[-1].startswith("Delta")


def check_before_work(cfg: DictConfig, spec: EnvSpec) -> None:
    """What would otherwise fail only once data collection or the Trainer is up."""
    meanings = spec.action_meanings()  # makes the env once: an unknown game id fails here
    delta_tokenizer, delta_world_model = is_delta(cfg.tokenizer), is_delta(cfg.world_model)
    if cfg.stage == "all" and delta_tokenizer != delta_world_model:
        raise ValueError(
            "tokenizer and world model are of different designs: pair tokenizer=delta with "
            "world_model=delta, or an IRIS tokenizer (tiny, iris) with world_model=tiny/iris"
        )
    if delta_tokenizer and cfg.tokenizer.module.model.num_actions != len(meanings):
        raise ValueError(
            f"tokenizer.module.model.num_actions is {cfg.tokenizer.module.model.num_actions}"
            f" but {spec.game_id} has {len(meanings)} actions"
        )
    if (
        cfg.stage == "all"
        and delta_world_model
        and cfg.world_model.module.model.get("ball_motion")
        and not cfg.tokenizer.module.model.get("ball_slot")
    ):
        raise ValueError(
            "world_model.module.model.ball_motion=true (the default) needs the tokenizer's ball "
            "slot: keep tokenizer.module.model.ball_slot=true or add "
            "world_model.module.model.ball_motion=false"
        )
    if delta_world_model and cfg.world_model.get("init_from"):
        raise ValueError("world_model.init_from (a warm start) is for IRIS world models only")
    if cfg.trainer.get("accelerator") in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(
            "trainer=gpu (the default of +exp=pong) needs a CUDA GPU and none was found: add "
            "trainer=cpu, or train the laptop recipe +exp=pong_tiny"
        )


def run(cfg: DictConfig) -> float | None:
    """Run the configured stage(s); returns the last stage's validation loss (for sweeps)."""
    if cfg.stage not in (*STAGES, "all"):
        raise ValueError(f"stage must be one of {STAGES + ('all',)}, got {cfg.stage!r}")
    if cfg.get("torch_threads"):
        torch.set_num_threads(cfg.torch_threads)
    if cfg.stage == "all" and cfg.ckpt_path not in (None, "last"):
        raise ValueError(
            "stage=all resumes with ckpt_path=last (each stage from its own "
            "last.ckpt); an explicit checkpoint path needs stage=tokenizer or "
            "stage=world_model"
        )
    spec: EnvSpec = instantiate(cfg.env)
    check_before_work(cfg, spec)
    metric = None
    tokenizer_ckpt = cfg.tokenizer_ckpt
    if cfg.stage in ("tokenizer", "all"):
        module = instantiate(cfg.tokenizer.module)
        # A resumed run already started from init_from; its checkpoint has the weights since.
        if cfg.tokenizer.get("init_from") and resume_path(cfg, "tokenizer") is None:
            warm_start_tokenizer(module.tokenizer, cfg.tokenizer.init_from)
        trainer, tokenizer_ckpt = fit_stage(
            cfg, "tokenizer", module, spec, mode=module.data_mode, seq_len=module.sequence_length
        )
        metric = trainer.callback_metrics.get("val/loss")
    if cfg.stage in ("world_model", "all"):
        if tokenizer_ckpt is None:
            raise ValueError(
                "stage=world_model needs tokenizer_ckpt=PATH (a tokenizer checkpoint or bundle)"
            )
        tokenizer = load_tokenizer(tokenizer_ckpt)
        if is_delta(cfg.world_model) != isinstance(tokenizer, DeltaTokenizer):
            raise ValueError(
                f"{tokenizer_ckpt} holds a {kind_of(tokenizer)} tokenizer, which "
                f"world_model={'delta' if is_delta(cfg.world_model) else 'tiny/iris'} cannot read"
            )
        meanings = spec.action_meanings()
        module = instantiate(
            cfg.world_model.module, tokenizer=tokenizer, model={"num_actions": len(meanings)}
        )
        # A resumed run already started from init_from; its checkpoint has the weights since.
        if cfg.world_model.init_from and resume_path(cfg, "world_model") is None:
            warm_start_world_model(module.world_model, cfg.world_model.init_from)
        trainer, _ = fit_stage(
            cfg,
            "world_model",
            module,
            spec,
            mode="segments",
            seq_len=cfg.world_model.seq_len,
            tokenizer=tokenizer,
        )
        metric = trainer.callback_metrics.get("val/loss")
        if not trainer.is_global_zero:
            return None
        bundle = save_bundle(
            Path(cfg.paths.output_dir) / "bundle.ckpt",
            tokenizer,
            module.world_model,
            spec,
            meanings,
            OmegaConf.to_yaml(cfg),
        )
        log.info("bundle written: %s", bundle)
    return None if metric is None else float(metric)


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    try:
        return run(cfg)
    except (ValueError, BundleError, InstantiationException) as err:
        # A setting a module's constructor refuses reaches here wrapped by instantiate.
        cause = err.__cause__ if isinstance(err, InstantiationException) else err
        if HydraConfig.get().mode == RunMode.MULTIRUN or not isinstance(cause, ValueError):
            raise  # the sweep's launcher reports the failed job; a bug keeps its traceback
        print(f"error: {cause}", file=sys.stderr)
        raise SystemExit(2) from None


def multirun_flag_first(argv: list[str]) -> list[str]:
    """`python -m worldmodel.train +exp=pong -m a=1,2` (the documented form): Hydra's parser
    only accepts -m/--multirun before the overrides, so move it there."""
    flags = [a for a in argv if a in ("-m", "--multirun")]
    return flags + [a for a in argv if a not in flags]


if __name__ == "__main__":
    sys.argv[1:] = multirun_flag_first(sys.argv[1:])
    main()
