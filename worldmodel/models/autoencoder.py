"""Convolutional encoder/decoder (the VQGAN/IRIS design) with per-level block counts.

IRIS puts two residual blocks at every resolution; on a CPU that costs 20x a plain
strided conv net, so `res_blocks` is per level and the tiny config downsamples first
with cheap strided convs, keeping the heavy blocks at 16x16 and below.
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class AutoencoderConfig:
    resolution: int = 64
    in_channels: int = 3
    ch: int = 64
    ch_mult: list[int] = field(default_factory=lambda: [1, 1, 1, 1, 1])
    res_blocks: list[int] = field(default_factory=lambda: [2, 2, 2, 2, 2])
    attn_resolutions: list[int] = field(default_factory=lambda: [8, 16])
    z_channels: int = 512
    dropout: float = 0.0
    # GroupNorm groups (at most; a group keeps >= 4 channels). Few groups suit tiny maps:
    # on a 1x1 map a group of 4 channels normalised on its own loses half of what it says.
    norm_groups: int = 32
    # "nearest": upsample + 3x3 conv (IRIS); "transpose": a 4x4 stride-2 transposed conv,
    # ~9x cheaper at high resolution (the CPU config's choice).
    upsample: str = "nearest"

    def __post_init__(self) -> None:
        if len(self.res_blocks) != len(self.ch_mult):
            raise ValueError(
                f"res_blocks {self.res_blocks} needs one entry per level {self.ch_mult}"
            )

    @property
    def latent_resolution(self) -> int:
        return self.resolution // 2 ** (len(self.ch_mult) - 1)


def norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, channels // 4), channels, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, cfg: AutoencoderConfig) -> None:
        super().__init__()
        self.block = nn.Sequential(
            norm(c_in, cfg.norm_groups),
            nn.SiLU(),
            nn.Conv2d(c_in, c_out, 3, padding=1),
            norm(c_out, cfg.norm_groups),
            nn.SiLU(),
            nn.Dropout(cfg.dropout),
            nn.Conv2d(c_out, c_out, 3, padding=1),
        )
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.block(x)


class SelfAttention(nn.Module):
    """Single-head attention over the pixels of a (small) feature map."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


def level_blocks(
    c_in: int, c_out: int, n_res: int, with_attn: bool, cfg: AutoencoderConfig
) -> list:
    blocks: list[nn.Module] = []
    for _ in range(n_res):
        blocks.append(ResBlock(c_in, c_out, cfg))
        c_in = c_out
        if with_attn:
            blocks.append(SelfAttention(c_out, cfg.norm_groups))
    if n_res == 0 and c_in != c_out:
        blocks.append(nn.Conv2d(c_in, c_out, 3, padding=1))
    return blocks


def middle_blocks(c: int, cfg: AutoencoderConfig) -> list[nn.Module]:
    return [ResBlock(c, c, cfg), SelfAttention(c, cfg.norm_groups), ResBlock(c, c, cfg)]


class Encoder(nn.Module):
    """(B, 3, R, R) in [-1, 1] -> (B, z_channels, R / 2^(levels-1), ...)."""

    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        chans = [cfg.ch * m for m in cfg.ch_mult]
        layers: list[nn.Module] = [nn.Conv2d(cfg.in_channels, chans[0], 3, padding=1)]
        resolution, c = cfg.resolution, chans[0]
        for level, (c_out, n_res) in enumerate(zip(chans, cfg.res_blocks, strict=True)):
            layers += level_blocks(c, c_out, n_res, resolution in cfg.attn_resolutions, cfg)
            c = c_out
            if level < len(chans) - 1:
                layers.append(nn.Conv2d(c, c, 4, stride=2, padding=1))
                resolution //= 2
        layers += [*middle_blocks(c, cfg)]
        layers += [norm(c, cfg.norm_groups), nn.SiLU(), nn.Conv2d(c, cfg.z_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def upsample(c_in: int, c_out: int, kind: str) -> list[nn.Module]:
    if kind == "nearest":
        return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1)]
    if kind == "transpose":
        return [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)]
    raise ValueError(f"upsample must be 'nearest' or 'transpose', got {kind!r}")


class Decoder(nn.Module):
    """The mirror image: (B, z_channels, r, r) -> (B, 3, R, R) in roughly [-1, 1]."""

    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        chans = [cfg.ch * m for m in cfg.ch_mult][::-1]
        res_blocks = cfg.res_blocks[::-1]
        c = chans[0]
        layers: list[nn.Module] = [nn.Conv2d(cfg.z_channels, c, 3, padding=1)]
        layers += [*middle_blocks(c, cfg)]
        resolution = cfg.latent_resolution
        for level, (c_out, n_res) in enumerate(zip(chans, res_blocks, strict=True)):
            layers += level_blocks(c, c_out, n_res, resolution in cfg.attn_resolutions, cfg)
            c = c_out
            if level < len(chans) - 1:
                # A level without residual blocks gets its channels from the upsampling
                # itself, rather than from an extra full-resolution conv.
                c_next = chans[level + 1] if res_blocks[level + 1] == 0 else c
                layers += upsample(c, c_next, cfg.upsample)
                c, resolution = c_next, resolution * 2
        layers += [norm(c, cfg.norm_groups), nn.SiLU(), nn.Conv2d(c, cfg.in_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
