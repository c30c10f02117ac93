"""What the training stages wrote, read back: a stage's Lightning checkpoint holds its
module's weights under `tokenizer.` / `world_model.` and the model's config in
`hyper_parameters["model"]`. Warm starts (a new run from another's weights) read stage
checkpoints and bundles alike. Nothing here imports Lightning; play and eval read bundles
only (worldmodel.bundle)."""

import logging
from dataclasses import asdict
from pathlib import Path

import torch

from worldmodel.bundle import (
    FORMAT,
    AnyTokenizer,
    BundleError,
    load_bundle,
    load_weights,
    read_checkpoint,
)
from worldmodel.models.delta_tokenizer import DeltaTokenizer, DeltaTokenizerConfig
from worldmodel.models.tokenizer import Tokenizer, TokenizerConfig

log = logging.getLogger(__name__)


def submodule_state(state_dict: dict, name: str) -> dict[str, torch.Tensor]:
    """The entries of a LightningModule's state dict that belong to its submodule `name`."""
    prefix = name + "."
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def load_tokenizer(path: str | Path, device: str | torch.device = "cpu") -> AnyTokenizer:
    """A tokenizer from a bundle or from a tokenizer stage's Lightning checkpoint."""
    path = Path(path)
    payload = read_checkpoint(path)
    if payload.get("format") == FORMAT:
        return load_bundle(path, device, require_world_model=False).tokenizer
    model = payload.get("hyper_parameters", {}).get("model", {})
    if "autoencoder" in model:
        tokenizer = Tokenizer(TokenizerConfig(**model))
    elif "context_channels" in model:
        tokenizer = DeltaTokenizer(DeltaTokenizerConfig(**model))
    else:
        raise BundleError(f"{path}: neither a bundle nor a tokenizer checkpoint")
    tokenizer.load_state_dict(submodule_state(payload["state_dict"], "tokenizer"))
    return tokenizer.to(device).eval()


def load_world_model_state(
    path: str | Path, tokenizer: Tokenizer | None = None
) -> tuple[dict[str, torch.Tensor], dict]:
    """The world model's state dict from a bundle or a world-model stage's checkpoint, and the
    WorldModelConfig fields the file records (a stage's checkpoint: its sizes only); with
    `tokenizer`, a BundleError unless the file's world model was trained on its tokens."""
    path = Path(path)
    payload = read_checkpoint(path)
    if tokenizer is not None:
        saved = (
            payload["tokenizer"]["state_dict"]
            if payload.get("format") == FORMAT
            else submodule_state(payload.get("state_dict", {}), "tokenizer")
        )
        if not same_weights(saved, tokenizer.state_dict()):
            raise BundleError(f"{path}: its world model was trained on another tokenizer")
    if payload.get("format") == FORMAT:
        if payload["world_model"] is None:
            raise BundleError(f"{path}: holds a tokenizer only, no world model")
        return payload["world_model"]["state_dict"], payload["world_model"]["config"]
    weights = submodule_state(payload.get("state_dict", {}), "world_model")
    if not weights:
        raise BundleError(f"{path}: neither a bundle nor a world-model checkpoint")
    return weights, payload.get("hyper_parameters", {}).get("model", {})


def check_same_tokenizer(checkpoint: dict, tokenizer: torch.nn.Module) -> None:
    """Resuming a world-model stage would load the checkpoint's tokenizer over the one given
    (whose tokens the data may already hold): refuse a checkpoint with another tokenizer."""
    saved = submodule_state(checkpoint["state_dict"], "tokenizer")
    if not same_weights(saved, tokenizer.state_dict()):
        raise ValueError(
            "the world-model checkpoint being resumed was trained on a different tokenizer "
            "than tokenizer_ckpt; to start from its weights on new tokens use "
            "world_model.init_from=CKPT (a fresh optimizer and step count) instead of ckpt_path"
        )


def warm_start_tokenizer(tokenizer: Tokenizer, path: str) -> None:
    """Start from another run's tokenizer weights (new optimizer, step 0): to fine-tune a
    trained tokenizer (a bundle's too) with other settings (the loss and learning rate live
    in the module, not here). The weights must fit; config fields that change none of them
    (local_encoder without attention, dead-code revival) may differ, and are logged."""
    source = load_tokenizer(path)
    load_weights(
        tokenizer, source.state_dict(), f"{path}: its tokenizer does not fit tokenizer's config"
    )
    ours, theirs = asdict(tokenizer.cfg), asdict(source.cfg)
    changed = {k: f"{theirs[k]} -> {ours[k]}" for k in ours if ours[k] != theirs[k]}
    log.info("tokenizer initialised from %s%s", path, f", changed: {changed}" if changed else "")


def warm_start_world_model(world_model: torch.nn.Module, path: str) -> None:
    """Start from another run's world-model weights (new optimizer, step 0): to go on at
    another learning rate, or on a tokenizer trained further. All weights load; on a new
    tokenizer the rows tied to token ids (token embedding, output head) carry over only as
    far as its ids keep their meaning."""
    mismatch = f"{path}: its world model does not fit world_model's config"
    weights, _ = load_world_model_state(path)
    load_weights(world_model, weights, mismatch)
    log.info("world model initialised from %s", path)
