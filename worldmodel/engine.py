"""The learned game: a trained tokenizer + world model behaving like a (batched) gym env.

    game = LearnedGame(tokenizer, world_model)
    frame = game.reset(real_frames)            # (B, H, W, 3) uint8, or (B, C, H, W, 3)
    frame, reward, end = game.step(actions)    # every frame from here on is imagined

Generation is one token at a time with a key/value cache, so each new token costs one
small forward pass; `compile=True` turns that pass into one torch.compile graph (about 2x
on CPU, where the per-op overhead of a small model dominates). When the context is full,
the oldest frames are dropped and the most recent `keep_frames` are re-read in one batched
forward (IRIS instead wipes its memory and restarts from the last frame alone, which
forgets where the ball was going).
"""

import warnings
from collections.abc import Callable
from typing import Any

import torch

from worldmodel.models.tokenizer import Tokenizer
from worldmodel.models.world_model import WorldModel


class CompiledOrEager:
    """`fn` through torch.compile (static shapes); if compiling fails, e.g. with no C++
    compiler on the machine, warn once and call `fn` as it is from then on."""

    def __init__(self, fn: Callable[..., Any], compile: bool) -> None:
        self.fn = fn
        self.compiled = torch.compile(fn, dynamic=False) if compile else None

    def __call__(self, *args: torch.Tensor) -> Any:
        if self.compiled is None:
            return self.fn(*args)
        try:
            return self.compiled(*args)
        except torch._dynamo.exc.TorchDynamoException as error:  # Inductor/backend failures too
            message = (str(error).strip().splitlines() or [""])[0]
            warnings.warn(
                f"torch.compile failed ({type(error).__name__}: {message}); running without "
                "it (compile=false skips the attempt)",
                stacklevel=2,
            )
            self.compiled = None
            return self.fn(*args)


def to_uint8_frames(frames: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float in [0, 1] -> (B, H, W, 3) uint8."""
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)


class LearnedGame:
    def __init__(
        self,
        tokenizer: Tokenizer,
        world_model: WorldModel,
        *,
        temperature: float = 1.0,
        greedy: bool = False,
        seed: int | None = None,
        keep_frames: int | None = None,
        compile: bool = False,
    ) -> None:
        self.tokenizer, self.world_model = tokenizer.eval(), world_model.eval()
        # Shapes are static (see Transformer.step), so each compiles once per batch size (up
        # to Dynamo's recompile limit, 8 per function, past which it quietly runs eager).
        self._step = CompiledOrEager(world_model.next_token_probs, compile)
        self._decode = CompiledOrEager(tokenizer.decode, compile)
        self.cfg = world_model.cfg
        self.temperature, self.greedy = temperature, greedy
        self.device = next(world_model.parameters()).device
        self.generator = torch.Generator(self.device)
        if seed is None:
            self.generator.seed()  # a fresh unseeded generator would always start the same
        else:
            self.generator.manual_seed(seed)
        max_frames = self.cfg.max_frames
        self.keep_frames = max(1, min(keep_frames or max_frames // 2, max_frames - 1))
        self.cache = None
        self.frame_tokens: torch.Tensor | None = None  # (B, n, K) the frames in context
        self.actions: torch.Tensor | None = None  # (B, n-1) the actions between them

    @property
    def batch_size(self) -> int:
        return 0 if self.frame_tokens is None else self.frame_tokens.shape[0]

    @torch.inference_mode()
    def reset(self, frames: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        """Start from real frames: (B, H, W, 3) uint8, or a context (B, C, H, W, 3) with the
        C-1 actions (B, C-1) taken between them. Returns the last frame as the model sees it."""
        frames = frames.to(self.device)
        if frames.dim() == 4:
            frames = frames[:, None]
        b, c = frames.shape[:2]
        if c > self.cfg.max_frames:
            raise ValueError(f"{c} context frames exceed the model's {self.cfg.max_frames}")
        tokens = self.tokenizer.encode(frames.flatten(0, 1)).view(b, c, -1)
        actions = torch.zeros(b, 0, dtype=torch.long) if actions is None else actions
        self.frame_tokens, self.actions = tokens, actions.to(self.device).long()
        self.cache = self.world_model.new_cache(b, self.device)
        self._prefill()
        return to_uint8_frames(self._decode(tokens[:, -1].contiguous()))  # as step() has it

    @torch.inference_mode()
    def _prefill(self) -> None:
        """Read the whole context (all frames, the actions between them) in one forward."""
        self.cache.reset()
        b = self.batch_size
        pad = torch.zeros(b, 1, dtype=torch.long, device=self.device)
        sequence = self.world_model.interleave(self.frame_tokens, torch.cat([self.actions, pad], 1))
        self.world_model.hidden(sequence[:, :-1], self.cache)  # all but the trailing action

    def _feed(
        self, tokens: torch.Tensor, inv_temp: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append one token per game (B,) to the context -> (hidden, next-token probs)."""
        if self.cache.length >= self.cache.capacity:
            raise RuntimeError(f"the context is full ({self.cache.capacity} tokens)")
        h, probs, new_kv = self._step(tokens, self.cache.position, self.cache.kv, inv_temp)
        self.cache.append(new_kv)
        return h, probs

    def _sample(self, probs: torch.Tensor) -> torch.Tensor:
        if self.greedy or self.temperature <= 0:
            return probs.argmax(-1)
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)

    @torch.inference_mode()
    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Imagine one step: (B,) actions -> frames (B, H, W, 3) uint8, rewards (B,) in
        {-1, 0, 1}, ends (B,) bool."""
        if self.cache is None:
            raise RuntimeError("call reset(frames) before step(actions)")
        k = self.cfg.tokens_per_frame
        if self.cache.length + k + 1 > self.cache.capacity:
            self.frame_tokens = self.frame_tokens[:, -self.keep_frames :]
            self.actions = (
                self.actions[:, -(self.keep_frames - 1) :]
                if self.keep_frames > 1
                else self.actions[:, :0]
            )
            self._prefill()
        actions = actions.to(self.device).long().view(-1)
        # A tensor, so a new temperature (+/- in the app) does not recompile; once per frame.
        inv_temp = torch.tensor(1.0 / self.temperature if self.temperature > 0 else 1.0)
        h, probs = self._feed(actions + self.cfg.num_codes, inv_temp)
        rewards = self.world_model.reward_head(h).argmax(-1) - 1
        ends = self.world_model.end_head(h).argmax(-1) == 1
        new_tokens = []
        for _ in range(k):
            token = self._sample(probs)
            new_tokens.append(token)
            # Feeding the frame's last token too: its keys/values belong in the cache.
            h, probs = self._feed(token, inv_temp)
        tokens = torch.stack(new_tokens, dim=1)
        self.frame_tokens = torch.cat([self.frame_tokens, tokens[:, None]], dim=1)
        self.actions = torch.cat([self.actions, actions[:, None]], dim=1)
        frames = to_uint8_frames(self._decode(tokens))
        return frames, rewards.float(), ends
