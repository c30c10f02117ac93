"""The discrete autoencoder: a frame <-> a small grid of codebook indices (tokens)."""

from dataclasses import dataclass, field, replace

import torch
from einops import rearrange
from torch import nn

from worldmodel.frames import to_float_frames
from worldmodel.models.autoencoder import AutoencoderConfig, Decoder, Encoder
from worldmodel.models.quantizer import QuantizerOutput, VectorQuantizer


@dataclass
class TokenizerConfig:
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    num_codes: int = 512
    code_dim: int = 512
    cosine_codes: bool = True
    revive_dead_codes: bool = True
    dead_after_steps: int = 200
    # Encode every patch (one token's share of the frame) on its own. A global encoder lets
    # each token carry its neighbours too (an empty Pong patch got 113 different codes),
    # which leaves too few codes to say where in its patch the ball is.
    local_encoder: bool = False
    # One codebook per token position (see VectorQuantizer): ids still run over num_codes.
    codebook_per_position: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.autoencoder, dict):
            self.autoencoder = AutoencoderConfig(**self.autoencoder)

    @property
    def tokens_per_frame(self) -> int:
        return self.autoencoder.latent_resolution**2


@dataclass
class TokenizerOutput:
    reconstruction: torch.Tensor  # (B, 3, H, W) in [0, 1] (unclamped while training)
    quantized: QuantizerOutput


class Tokenizer(nn.Module):
    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ae = cfg.autoencoder
        self.patch = ae.resolution // ae.latent_resolution
        # A patch's last levels are 2x2 and 1x1 maps: normalise all channels together there.
        local = replace(ae, resolution=self.patch, norm_groups=1)
        self.encoder = Encoder(local if cfg.local_encoder else ae)
        self.pre_quant = nn.Conv2d(ae.z_channels, cfg.code_dim, 1)
        self.quantizer = VectorQuantizer(
            cfg.num_codes,
            cfg.code_dim,
            cfg.cosine_codes,
            cfg.revive_dead_codes,
            cfg.dead_after_steps,
            books=cfg.tokens_per_frame if cfg.codebook_per_position else 1,
        )
        self.post_quant = nn.Conv2d(cfg.code_dim, ae.z_channels, 1)
        self.decoder = Decoder(ae)
        self.latent_shape = (ae.latent_resolution, ae.latent_resolution)

    def to_patches(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B * h * w, C, p, p): one image per token, row by row."""
        h, w = self.latent_shape
        return rearrange(x, "b c (h ph) (w pw) -> (b h w) c ph pw", h=h, w=w)

    def _latents(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) what the encoder says, before the codebook."""
        x = to_float_frames(frames) * 2 - 1
        if not self.cfg.local_encoder:
            return self.pre_quant(self.encoder(x))
        patches = self.encoder(self.to_patches(x))  # (B * h * w, D, 1, 1)
        z = rearrange(patches, "(b h w) d 1 1 -> b d h w", b=x.shape[0], h=self.latent_shape[0])
        return self.pre_quant(z)

    def _encode(self, frames: torch.Tensor) -> QuantizerOutput:
        return self.quantizer(self._latents(frames))

    def _draw(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) code vectors -> frames in [0, 1], unclamped (the loss sees overshoot)."""
        return (self.decoder(self.post_quant(z)) + 1) / 2

    def forward(self, frames: torch.Tensor) -> TokenizerOutput:
        quantized = self._encode(frames)
        reconstruction = self._draw(quantized.z_q)
        return TokenizerOutput(reconstruction, quantized)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames (B, H, W, 3) uint8 or (B, 3, H, W) float in [0, 1] -> tokens (B, K) long."""
        return self._encode(frames).tokens

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, K) -> frames (B, 3, H, W) float in [0, 1]."""
        z_q = self.quantizer.lookup(tokens, self.latent_shape)
        return self._draw(z_q).clamp(0, 1)

    context_frames = 1  # a step's tokens read its frame alone

    @property
    def frame_tokens(self) -> int:
        return self.cfg.tokens_per_frame

    @torch.no_grad()
    def step_tokens(
        self, recent: torch.Tensor, actions: torch.Tensor, next_frames: torch.Tensor
    ) -> torch.Tensor:
        """The tokens a step of play is stored with (FrameEncoder; `recent` (B, n, H, W, 3)
        the frames up to the step's): its own frame's."""
        return self.encode(recent[:, -1])

    @torch.no_grad()
    def round_trip(
        self, previous: torch.Tensor, actions: torch.Tensor, frames: torch.Tensor
    ) -> torch.Tensor:
        """decode(encode(frames)); the frame before and the action between (which the
        context-aware tokenizer takes) make no difference to these tokens."""
        return self.decode(self.encode(frames))

    @torch.no_grad()
    def decode_unquantized(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames -> what the decoder draws from the encoder's output itself, skipping the
        codebook (as the distances see it: l2-normalised with cosine codes). Against
        decode(encode(frames)) it tells what the quantization loses from what the
        autoencoder never had."""
        z = self._latents(frames).permute(0, 2, 3, 1)
        z = self.quantizer.prepare(z).permute(0, 3, 1, 2)
        return self._draw(z).clamp(0, 1)
