"""The context-aware tokenizer (Delta-IRIS): a frame -> a few tokens, *given the frames before
it and the action between them*, so that the tokens carry only what changed.

    encoder: (context frames, action plane, frame) stacked as channels -> latent map
             -> K regions -> K code vectors -> K tokens (indices into one codebook)
    decoder: (context frames' embedding, action embedding, the K code vectors) -> frame

The context (the last `context_frames` frames) reaches the decoder only through `context`, a
small embedding at the latent resolution: drawn at full resolution it lets the decoder copy
the old frame and ignore the tokens, which then carry nothing (a ball left behind).

Given the frames before, the tokens still say where the ball *is* (experiments/RESULTS.md),
so a world model has to place every step of a flight anew. With `predicted_tolerance` the
tokenizer also learns to draw the frame from the context alone (K learned "as predicted"
vectors in place of the codes: with two context frames, a flight continued at its velocity),
and a frame that this drawing gets right to within the tolerance at its worst pixel is
coded as K "as predicted" tokens (id `num_codes`): a flight is then one repeated token, and
the codes are left for what the context cannot tell (bounces, serves, the opponent's moves).

With `ball_slot` the ball is not in the codes at all: a frame's tokens are the ball's
position (two tokens, see `ball_slot.py`) and then the K codes of the frame with its ball
erased; the decoder draws the frame without the ball and the ball is drawn over it.

With `score_slot` a frame's first token says who scored since the frame before, and the
score rows are drawn from the frame before and the digit font (see `score_slot.py`).
"""

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from worldmodel.frames import to_float_frames
from worldmodel.models.autoencoder import AutoencoderConfig, ResBlock, norm
from worldmodel.models.ball_slot import COLUMNS, ROWS, BallSlot
from worldmodel.models.quantizer import QuantizerOutput, VectorQuantizer
from worldmodel.models.score_slot import CHANGES, NOBODY, ScoreSlot
from worldmodel.models.tokenizer import TokenizerOutput


@dataclass
class DeltaTokenizerConfig:
    resolution: int = 64
    num_actions: int = 6
    tokens_per_frame: int = 4  # K: a square grid of regions of the latent map
    num_codes: int = 1024
    code_dim: int = 64
    channels: int = 32  # width of the first level; x2 at each downsampling after it
    levels: int = 3  # downsamplings: latent resolution = resolution / 2**levels
    latent_channels: int = 64
    res_blocks: int = 1  # residual blocks at each level from 16x16 down
    context_channels: int = 16  # the previous frame's embedding at the latent resolution
    action_channels: int = 4
    # The frames before that the encoder and decoder see: 1 as Delta-IRIS, 2 to show velocity.
    context_frames: int = 1
    # A frame whose drawing from the context alone is off by at most this at its worst pixel
    # (in [0, 1]) is coded "as predicted"; 0: never (no such token).
    predicted_tolerance: float = 0.0
    # Draw the frame as the previous frame plus a drawn change (the change's last layer
    # starts at zero, so an untrained tokenizer copies the previous frame).
    residual: bool = False
    # Pong's ball as two position tokens before the codes, drawn as the emulator draws it.
    ball_slot: bool = False
    # Pong's score as a token first: who scored since the frame before (score_slot.py).
    score_slot: bool = False
    cosine_codes: bool = True
    revive_dead_codes: bool = True
    dead_after_steps: int = 50

    def __post_init__(self) -> None:
        if self.context_frames < 1:
            raise ValueError(f"context_frames must be at least 1, got {self.context_frames}")
        if not 0 <= self.predicted_tolerance < 1:
            raise ValueError(
                f"predicted_tolerance must be in [0, 1), got {self.predicted_tolerance}"
            )
        for slot in ("ball_slot", "score_slot"):
            if getattr(self, slot) and self.as_predicted:
                raise ValueError(f"{slot} and predicted_tolerance > 0 do not go together")
        grid = math.isqrt(self.tokens_per_frame)
        if grid * grid != self.tokens_per_frame:
            raise ValueError(f"tokens_per_frame must be a square, got {self.tokens_per_frame}")
        if self.latent_resolution % grid:
            raise ValueError(
                f"a {grid}x{grid} token grid does not divide the {self.latent_resolution}x"
                f"{self.latent_resolution} latent map (resolution / 2**levels)"
            )

    @property
    def latent_resolution(self) -> int:
        return self.resolution // 2**self.levels

    @property
    def as_predicted(self) -> bool:
        return self.predicted_tolerance > 0

    @property
    def ball_ids(self) -> tuple[int, int]:
        """The first id of the ball's column tokens and of its row tokens (each with a last
        id for "no ball")."""
        first = self.num_codes + self.as_predicted
        return first, first + COLUMNS + 1

    @property
    def score_ids(self) -> int:
        """The first id of the score change tokens."""
        return self.ball_ids[1] + (ROWS + 1 if self.ball_slot else -COLUMNS - 1)

    @property
    def vocab_size(self) -> int:
        """Token ids: the codes, then "as predicted" or the ball's columns and rows, then
        the score changes (each when used)."""
        return self.score_ids + CHANGES * self.score_slot

    @property
    def frame_tokens(self) -> int:
        """The tokens a frame is stored as: the score change, the ball's two (each when
        used), then the K codes."""
        return self.tokens_per_frame + 2 * self.ball_slot + self.score_slot

    @property
    def input_tokens(self) -> int:
        """The tokens of a frame a world model reads: all but the score change (predicted
        beside the reward)."""
        return self.frame_tokens - self.score_slot

    @property
    def token_grid(self) -> int:
        return math.isqrt(self.tokens_per_frame)

    @property
    def region(self) -> int:
        """Latent pixels along a side of one token's region."""
        return self.latent_resolution // self.token_grid


def conv_stack(c_in: int, c_out: int, cfg: DeltaTokenizerConfig) -> nn.Sequential:
    """(B, c_in, R, R) -> (B, c_out, R / 2**levels, ...): strided convs, with residual blocks
    at 16x16 and below (where they are cheap on a CPU)."""
    blocks = AutoencoderConfig(norm_groups=8)
    layers: list[nn.Module] = [nn.Conv2d(c_in, cfg.channels, 3, padding=1)]
    c, resolution = cfg.channels, cfg.resolution
    for _ in range(cfg.levels):
        layers.append(nn.Conv2d(c, 2 * c, 4, stride=2, padding=1))
        c, resolution = 2 * c, resolution // 2
        if resolution <= 16:
            layers += [ResBlock(c, c, blocks) for _ in range(cfg.res_blocks)]
    layers += [norm(c, 8), nn.SiLU(), nn.Conv2d(c, c_out, 3, padding=1)]
    return nn.Sequential(*layers)


class Decoder(nn.Module):
    """(B, c_in, r, r) -> (B, 3, R, R) in roughly [-1, 1]: the mirror of conv_stack."""

    def __init__(self, c_in: int, cfg: DeltaTokenizerConfig) -> None:
        super().__init__()
        blocks = AutoencoderConfig(norm_groups=8)
        c = cfg.channels * 2**cfg.levels
        layers: list[nn.Module] = [nn.Conv2d(c_in, c, 3, padding=1)]
        resolution = cfg.latent_resolution
        for _ in range(cfg.levels):
            if resolution <= 16:
                layers += [ResBlock(c, c, blocks) for _ in range(cfg.res_blocks)]
            layers.append(nn.ConvTranspose2d(c, c // 2, 4, stride=2, padding=1))
            c, resolution = c // 2, resolution * 2
        layers += [norm(c, 8), nn.SiLU(), nn.Conv2d(c, 3, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DeltaTokenizer(nn.Module):
    def __init__(self, cfg: DeltaTokenizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        r, n = cfg.resolution, cfg.latent_resolution
        self.encoder_action = nn.Embedding(cfg.num_actions, r * r)  # an image-sized plane
        context = 3 * cfg.context_frames
        self.encoder = conv_stack(context + 4, cfg.latent_channels, cfg)
        region_dim = cfg.latent_channels * cfg.region**2
        self.pre_quant = nn.Linear(region_dim, cfg.code_dim)
        self.quantizer = VectorQuantizer(
            cfg.num_codes,
            cfg.code_dim,
            cfg.cosine_codes,
            cfg.revive_dead_codes,
            cfg.dead_after_steps,
        )
        self.post_quant = nn.Linear(cfg.code_dim, region_dim)
        if cfg.as_predicted:  # the K vectors drawn in place of the codes of a predicted frame
            shape = (cfg.code_dim, 1, cfg.tokens_per_frame)  # as z_q: (D, 1, K)
            self.predicted_codes = nn.Parameter(0.1 * torch.randn(shape))
        self.context = conv_stack(context, cfg.context_channels, cfg)
        self.decoder_action = nn.Embedding(cfg.num_actions, cfg.action_channels * n * n)
        self.decoder = Decoder(
            cfg.latent_channels + cfg.context_channels + cfg.action_channels, cfg
        )
        if cfg.residual:
            nn.init.zeros_(self.decoder.net[-1].weight)
            nn.init.zeros_(self.decoder.net[-1].bias)
        self.ball = BallSlot(cfg.resolution) if cfg.ball_slot else None
        self.score = ScoreSlot(cfg.resolution) if cfg.score_slot else None
        self.register_buffer("ball_first_ids", torch.tensor(cfg.ball_ids), persistent=False)

    # --- the token layout: K regions of the latent map, row by row -------------------------

    def _to_regions(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, n, n) -> (B, K, C * region**2)."""
        g = self.cfg.token_grid
        return rearrange(z, "b c (gy py) (gx px) -> b (gy gx) (c py px)", gy=g, gx=g)

    def _from_regions(self, v: torch.Tensor) -> torch.Tensor:
        """(B, K, C * region**2) -> (B, C, n, n)."""
        g, p = self.cfg.token_grid, self.cfg.region
        return rearrange(v, "b (gy gx) (c py px) -> b c (gy py) (gx px)", gy=g, py=p, px=p)

    # --- encoder / decoder ---------------------------------------------------------------

    def stack_context(self, previous: torch.Tensor) -> torch.Tensor:
        """The frames before: (B, H, W, 3) one, or (B, n, H, W, 3) the last n, oldest first
        (uint8, or float (B[, n], 3, H, W)) -> (B, 3 * context_frames, H, W) in [-1, 1]. The
        last `context_frames` are read; fewer repeat the oldest (an episode's start)."""
        x = to_float_frames(previous)
        x = x[:, None] if x.dim() == 4 else x
        c = self.cfg.context_frames
        if x.shape[1] < c:
            x = torch.cat([x[:, :1].expand(-1, c - x.shape[1], -1, -1, -1), x], 1)
        return x[:, -c:].flatten(1, 2) * 2 - 1

    def last_frame(self, previous: torch.Tensor) -> torch.Tensor:
        """The frame just before (see `stack_context`) -> (B, 3, H, W) in [0, 1]."""
        return (self.stack_context(previous)[:, -3:] + 1) / 2

    def _latents(
        self, previous: torch.Tensor, actions: torch.Tensor, frames: torch.Tensor
    ) -> torch.Tensor:
        """(B, D, 1, K): the encoder's K code vectors before the codebook."""
        b, r = frames.shape[0], self.cfg.resolution
        plane = self.encoder_action(actions).view(b, 1, r, r)
        x = torch.cat([self.stack_context(previous), plane, to_float_frames(frames) * 2 - 1], 1)
        codes = self.pre_quant(self._to_regions(self.encoder(x)))  # (B, K, code_dim)
        # The quantizer works on (B, D, h, w) maps: the K codes as a 1 x K map.
        return codes.transpose(1, 2)[:, :, None]

    def _quantize(
        self, previous: torch.Tensor, actions: torch.Tensor, frames: torch.Tensor
    ) -> QuantizerOutput:
        return self.quantizer(self._latents(previous, actions, frames))

    def _draw(
        self, previous: torch.Tensor, actions: torch.Tensor, z_q: torch.Tensor
    ) -> torch.Tensor:
        """(B, D, 1, K) code vectors -> frames in [0, 1], unclamped (the loss sees overshoot)."""
        n = self.cfg.latent_resolution
        tokens = self._from_regions(self.post_quant(z_q[:, :, 0].transpose(1, 2)))
        context = self.stack_context(previous)
        action = self.decoder_action(actions).view(-1, self.cfg.action_channels, n, n)
        change = self.decoder(torch.cat([tokens, self.context(context), action], 1))
        if self.cfg.residual:
            return (context[:, -3:] + 1) / 2 + change
        return (change + 1) / 2

    def draw_as_predicted(self, previous: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The frame drawn from the context and the action alone, unclamped."""
        codes = self.predicted_codes[None].expand(len(actions), -1, -1, -1)
        return self._draw(previous, actions, codes)

    def _slots(
        self, previous: torch.Tensor, frames: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames -> their slots' tokens (B, frame_tokens - K): who scored, then the ball's
        column and row (each with its slot); and the frames the codes are made of (without
        the ball)."""
        slots = [torch.zeros(len(frames), 0, dtype=torch.long, device=frames.device)]
        if self.score is not None:
            changes = self.score.change(self.last_frame(previous), to_float_frames(frames))
            slots.append(changes[:, None] + self.cfg.score_ids)
        if self.ball is not None:
            ball = self.ball.locate(frames)
            frames = self.ball.erase(to_float_frames(frames), self.ball.cover(ball))
            slots.append(ball + self.ball_first_ids)
        return torch.cat(slots, 1), frames

    def _draw_slots(
        self, previous: torch.Tensor, drawn: torch.Tensor, slots: torch.Tensor
    ) -> torch.Tensor:
        """The decoder's drawing (B, 3, H, W) with the slots' objects drawn over it; a token
        out of its place's range (a world model's slip) draws as no ball or nobody scoring."""
        if self.ball is not None:
            ball = slots[:, -2:] - self.ball_first_ids
            none = self.ball.none
            ball = torch.where(((ball < 0) | (ball >= none)).any(1, keepdim=True), none, ball)
            drawn = self.ball.draw(drawn, self.ball.cover(ball))
        if self.score is not None:
            changes = slots[:, 0] - self.cfg.score_ids
            changes = torch.where((changes >= 0) & (changes < CHANGES), changes, NOBODY)
            drawn = self.score.draw(self.last_frame(previous), drawn, changes)
        return drawn

    def forward(
        self, previous: torch.Tensor, actions: torch.Tensor, frames: torch.Tensor
    ) -> TokenizerOutput:
        """Frames (B, H, W, 3) uint8 or (B, 3, H, W) in [0, 1]; `previous` the frame(s)
        before (see `stack_context`); actions (B,) taken between."""
        slots, coded = self._slots(previous, frames)
        quantized = self._quantize(previous, actions, coded)
        drawn = self._draw_slots(previous, self._draw(previous, actions, quantized.z_q), slots)
        return TokenizerOutput(drawn, quantized)

    def _encode(
        self, previous: torch.Tensor, actions: torch.Tensor, frames: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The tokens, and the as-predicted drawing the gate compared (None without it)."""
        slots, coded = self._slots(previous, frames)
        tokens = self._quantize(previous, actions, coded).tokens
        if not self.cfg.as_predicted:
            return torch.cat([slots, tokens], 1), None
        drawn = self.draw_as_predicted(previous, actions).clamp(0, 1)
        error = drawn - to_float_frames(frames)
        tokens[error.abs().flatten(1).amax(1) <= self.cfg.predicted_tolerance] = self.cfg.num_codes
        return tokens, drawn

    @torch.no_grad()
    def encode(
        self, previous: torch.Tensor, actions: torch.Tensor, frames: torch.Tensor
    ) -> torch.Tensor:
        """-> tokens (B, frame_tokens) long: the score change and the ball's column and row
        ids (with their slots), then the K codes; all K `num_codes` ("as predicted") for a
        frame the context alone draws to within `predicted_tolerance`."""
        return self._encode(previous, actions, frames)[0]

    @torch.no_grad()
    def decode(
        self, previous: torch.Tensor, actions: torch.Tensor, tokens: torch.Tensor
    ) -> torch.Tensor:
        """Tokens (B, frame_tokens) -> frames (B, 3, H, W) in [0, 1]. A token out of its
        place's range (a world model's slip) draws as the nearest code, as no ball or as
        nobody scoring."""
        slots, tokens = (
            tokens[:, : -self.cfg.tokens_per_frame],
            tokens[:, -self.cfg.tokens_per_frame :],
        )
        codes = tokens.clamp(max=self.cfg.num_codes - 1)
        z_q = self.quantizer.lookup(codes, (1, self.cfg.tokens_per_frame))
        if self.cfg.as_predicted:
            predicted = (tokens == self.cfg.num_codes)[:, None, None]  # (B, 1, 1, K)
            z_q = torch.where(predicted, self.predicted_codes[None], z_q)
        return self._draw_slots(previous, self._draw(previous, actions, z_q), slots).clamp(0, 1)

    def split_score(self, tokens: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Frames' tokens (..., frame_tokens) -> who scored (...) as change ids (None without
        the score slot; padding, token 0, reads as nobody) and the tokens a world model reads."""
        if self.score is None:
            return None, tokens
        return (tokens[..., 0] - self.cfg.score_ids).clamp(min=0), tokens[..., 1:]

    def with_score(self, changes: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
        """split_score's inverse: change ids (B,) (None without the slot) and the tokens a
        world model reads (B, n) -> the frame's tokens (B, frame_tokens)."""
        if changes is None:
            return tokens
        return torch.cat([(changes + self.cfg.score_ids)[:, None], tokens], 1)

    @property
    def context_frames(self) -> int:
        return self.cfg.context_frames

    @property
    def frame_tokens(self) -> int:
        return self.cfg.frame_tokens

    @torch.no_grad()
    def step_tokens(
        self, recent: torch.Tensor, actions: torch.Tensor, next_frames: torch.Tensor
    ) -> torch.Tensor:
        """The tokens a step of play is stored with (FrameEncoder; `recent` (B, n, H, W, 3)
        the frames up to the step's): those of the frame its action led to, given the frames
        up to its own (a world-model block's tokens)."""
        return self.encode(recent, actions, next_frames)

    @torch.no_grad()
    def round_trip(
        self, previous: torch.Tensor, actions: torch.Tensor, frames: torch.Tensor
    ) -> torch.Tensor:
        """Frames encoded and decoded, each given the real frames before it -> (B, 3, H, W)."""
        tokens, predicted = self._encode(previous, actions, frames)
        if predicted is None:
            return self.decode(previous, actions, tokens)
        coded = tokens[:, 0] != self.cfg.num_codes  # the others are drawn already
        drawn = predicted.clone()
        if coded.any():
            drawn[coded] = self.decode(previous[coded], actions[coded], tokens[coded])
        return drawn


def shuffled_token_ratio(
    tokenizer: DeltaTokenizer, previous: torch.Tensor, actions: torch.Tensor, frames: torch.Tensor
) -> float:
    """The squared error with each frame's codes swapped for another frame's of the batch,
    over the squared error with its own, on the pixels that changed (the slots' tokens stay:
    they do not reach the decoder). 1.0: the decoder ignores its codes (it draws from the
    previous frame and the action alone)."""
    tokens = tokenizer.encode(previous, actions, frames)
    target = to_float_frames(frames)
    last = tokenizer.last_frame(previous)
    changed = (target - last).abs().amax(1, keepdim=True) > 0.02
    own = tokenizer.decode(previous, actions, tokens)
    # Half a batch away: neighbouring pairs may be consecutive steps with near-equal tokens.
    k, shuffled = tokenizer.cfg.tokens_per_frame, tokens.clone()
    shuffled[:, -k:] = tokens[:, -k:].roll(max(len(tokens) // 2, 1), 0)
    other = tokenizer.decode(previous, actions, shuffled)

    def error(x: torch.Tensor) -> torch.Tensor:
        return ((x - target).pow(2) * changed).sum()

    return float(error(other) / error(own).clamp_min(1e-8))
