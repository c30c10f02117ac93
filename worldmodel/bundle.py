"""The bundle: one file with everything needed to play or evaluate a trained model.

It holds the tokenizer, the world model, their configs, the env spec and the training
config, as plain tensors/dicts/strings: it loads with `torch.load(weights_only=True)`,
which refuses any pickle that would run code.
"""

import pickle
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from worldmodel.envs.atari import EnvSpec
from worldmodel.models.delta_tokenizer import DeltaTokenizer, DeltaTokenizerConfig
from worldmodel.models.delta_world_model import DeltaWorldModel, DeltaWorldModelConfig
from worldmodel.models.tokenizer import Tokenizer, TokenizerConfig
from worldmodel.models.world_model import WorldModel, WorldModelConfig

FORMAT = "worldmodel-bundle"
VERSION = 1
# The two designs a bundle may hold: (tokenizer, its config, world model, its config).
# Bundles written before the "kind" field hold IRIS models.
KINDS = {
    "iris": (Tokenizer, TokenizerConfig, WorldModel, WorldModelConfig),
    "delta": (DeltaTokenizer, DeltaTokenizerConfig, DeltaWorldModel, DeltaWorldModelConfig),
}
AnyTokenizer = Tokenizer | DeltaTokenizer
AnyWorldModel = WorldModel | DeltaWorldModel


def kind_of(tokenizer: AnyTokenizer) -> str:
    return next(kind for kind, classes in KINDS.items() if isinstance(tokenizer, classes[0]))


class BundleError(ValueError):
    """A file that is not a usable bundle; the message is one line a person can act on."""


@dataclass
class Bundle:
    tokenizer: AnyTokenizer
    world_model: AnyWorldModel | None
    spec: EnvSpec
    action_meanings: tuple[str, ...]
    train_config: str  # the resolved Hydra config (YAML) that produced it

    @property
    def kind(self) -> str:
        return kind_of(self.tokenizer)


def save_bundle(
    path: str | Path,
    tokenizer: AnyTokenizer,
    world_model: AnyWorldModel | None,
    spec: EnvSpec,
    action_meanings: tuple[str, ...],
    train_config: str = "",
) -> Path:
    path = Path(path)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind_of(tokenizer),
        "tokenizer": {"config": asdict(tokenizer.cfg), "state_dict": tokenizer.state_dict()},
        "world_model": None
        if world_model is None
        else {"config": asdict(world_model.cfg), "state_dict": world_model.state_dict()},
        "env": spec.to_dict(),
        "action_meanings": list(action_meanings),
        "train_config": train_config,
    }
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: a crash never leaves half a bundle
    return path


def read_checkpoint(path: str | Path) -> dict:
    """A file torch.save wrote, read without running code (weights_only), or a BundleError."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives; this is something else
        raise BundleError(f"{path}: not a checkpoint (or a truncated one)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message goes on to suggest weights_only=False: not advice to pass on.
        raise BundleError(
            f"{path}: refused to load: it holds objects other than weights, which would run "
            "code on load (not a file worldmodel wrote)"
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise BundleError(
            f"{path}: not a readable checkpoint (truncated or corrupt?): {str(err).splitlines()[0]}"
        ) from err
    if not isinstance(payload, dict):
        raise BundleError(f"{path}: not a worldmodel bundle")
    return payload


def load_weights(model: torch.nn.Module, state_dict: dict, mismatch: str) -> None:
    """`model.load_state_dict`, or a BundleError: `mismatch` + the keys and shapes that differ."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:  # the message's first line is only a header
        details = " ".join(line.strip() for line in str(err).splitlines()[1:])
        raise BundleError(f"{mismatch}: {details}") from err


def _build(path: Path, model_cls, config_cls, part: dict):
    mismatch = (
        f"{path}: its weights do not fit the {model_cls.__name__} its config describes "
        "(written by another version of worldmodel?)"
    )
    try:
        model = model_cls(config_cls(**part["config"]))
        weights = part["state_dict"]
    except (TypeError, KeyError) as err:
        raise BundleError(f"{mismatch}: {err}") from err
    load_weights(model, weights, mismatch)
    return model


def load_bundle(
    path: str | Path, device: str | torch.device = "cpu", require_world_model: bool = True
) -> Bundle:
    path = Path(path)
    payload = read_checkpoint(path)
    if payload.get("format") != FORMAT:
        hint = (
            " (it is a Lightning training checkpoint: bundles are written as bundle.ckpt "
            "in the run directory)"
            if "state_dict" in payload
            else ""
        )
        raise BundleError(f"{path}: not a worldmodel bundle{hint}")
    kind = payload.get("kind", "iris")
    if kind not in KINDS:
        raise BundleError(
            f"{path}: holds a {kind!r} model, which this version of worldmodel does not know "
            f"(it knows {', '.join(KINDS)})"
        )
    tokenizer_cls, tokenizer_cfg, world_model_cls, world_model_cfg = KINDS[kind]
    tokenizer = _build(path, tokenizer_cls, tokenizer_cfg, payload["tokenizer"]).to(device).eval()
    world_model = None
    if payload["world_model"] is not None:
        world_model = _build(path, world_model_cls, world_model_cfg, payload["world_model"])
        world_model.to(device).eval()
    elif require_world_model:
        raise BundleError(f"{path}: holds a tokenizer only, no world model")
    return Bundle(
        tokenizer,
        world_model,
        EnvSpec(**payload["env"]),
        tuple(payload["action_meanings"]),
        payload.get("train_config", ""),
    )
