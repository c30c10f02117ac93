"""The learned game: a trained tokenizer + world model behaving like a (batched) gym env.

    game = LearnedGame(tokenizer, world_model)
    frame = game.reset(real_frames)            # (B, H, W, 3) uint8, or (B, C, H, W, 3)
    frame, reward, end = game.step(actions)    # every frame from here on is imagined

Generation keeps a key/value cache, so a forward reads only the new tokens. Two schedules
make the same frames from the same noise: *sequential*, one forward per token (17 per
frame), and *speculative* (the default for a single game, as in play), which guesses that
the new frame's 16 tokens repeat the last frame's and checks all of them in one forward: a
frame then costs 1 + (number of changed tokens) forwards, and a forward of 17 tokens costs
about twice one of a single token on CPU, where per-op overhead dominates a small model.
With many games at once one wrong guess in any game ends a check, so batches go
sequentially. `compile=True` turns a forward into one torch.compile graph (1.5-2x on CPU,
for the same reason). Sampling is Gumbel-max with the frame's noise drawn up front, which
is what makes the two schedules agree token for token (up to float rounding). When the
context is full,
the oldest frames are dropped and the most recent `keep_frames` are re-read in one batched
forward (IRIS instead wipes its memory and restarts from the last frame alone, which
forgets where the ball was going).
"""

from collections.abc import Sequence

import torch

from worldmodel.compiled import CompiledOrEager
from worldmodel.frames import to_uint8_frames
from worldmodel.models.tokenizer import Tokenizer
from worldmodel.models.world_model import WorldModel

# (1 / temperature, top_p) as 0-dim tensors (top_p None: no truncation, and no sort)
Sampling = tuple[torch.Tensor, torch.Tensor | None]


class LearnedGame:
    def __new__(cls, tokenizer: torch.nn.Module, world_model: torch.nn.Module, **options):
        """A context-aware (Delta-IRIS) world model plays through DeltaGame, the same API."""
        from worldmodel.delta_engine import DeltaGame  # it builds on this module
        from worldmodel.models.delta_world_model import DeltaWorldModel

        if cls is LearnedGame and isinstance(world_model, DeltaWorldModel):
            cls = DeltaGame
        return super().__new__(cls)

    def __init__(
        self,
        tokenizer: Tokenizer,
        world_model: WorldModel,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        greedy: bool | Sequence[bool] = False,
        seed: int | None = None,
        keep_frames: int | None = None,
        compile: bool = False,
        compile_in_background: bool = False,
        speculative: bool | None = None,
    ) -> None:
        """`top_p` < 1 samples from the nucleus only: the most likely tokens that make up
        that much of the probability (cuts the unlikely tail: a ball that jumps).
        `greedy`: take the likeliest tokens instead of sampling, for every game or per game
        (a sequence with one flag per game of the batch, e.g. greedy and sampled dreams
        side by side in one batch).
        `compile_in_background`: play eagerly while torch.compile works (CompiledOrEager).
        `speculative`: True / False picks the schedule (see the module docstring); None
        speculates for a single game (play) and goes sequentially for batches."""
        self.tokenizer, self.world_model = tokenizer.eval(), world_model.eval()
        # Shapes are static (see Transformer.extend), so each compiles once per batch size,
        # schedule and nucleus on/off (within compiled.RECOMPILE_LIMIT graphs a function).
        self._extend_and_sample = CompiledOrEager(
            world_model.extend_and_sample, compile, compile_in_background
        )
        self._decode = CompiledOrEager(tokenizer.decode, compile, compile_in_background)
        self._compiled_parts = [self._extend_and_sample, self._decode]
        self.cfg = world_model.cfg
        self.layout = self.cfg.layout  # where each input sits in a step's block
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.temperature, self.top_p, self.greedy = temperature, top_p, greedy
        self.speculative = speculative
        self.forwards = 0  # world-model forwards so far (both schedules count them)
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
    def compiling(self) -> bool:
        """Whether torch.compile is still at work in the background (compile_in_background)."""
        return any(part.pending for part in self._compiled_parts)

    @property
    def compiled(self) -> bool:
        """Whether generation runs the compiled graphs now."""
        return all(part.ready for part in self._compiled_parts)

    @property
    def batch_size(self) -> int:
        return 0 if self.frame_tokens is None else self.frame_tokens.shape[0]

    def _context_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """reset()'s frames as (B, C, H, W, 3) on the device, checked against the context."""
        frames = frames.to(self.device)
        frames = frames[:, None] if frames.dim() == 4 else frames
        if frames.shape[1] > self.cfg.max_frames:
            raise ValueError(
                f"{frames.shape[1]} context frames exceed the model's {self.cfg.max_frames}"
            )
        return frames

    @torch.inference_mode()
    def reset(self, frames: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        """Start from real frames: (B, H, W, 3) uint8, or a context (B, C, H, W, 3) with the
        C-1 actions (B, C-1) taken between them. Returns the last frame as the model sees it."""
        frames = self._context_frames(frames)
        b, c = frames.shape[:2]
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
        # all but the trailing action
        self.world_model.hidden(sequence[:, :-1], self.cache)

    def _sampling_games(self, b: int) -> list[bool]:
        """Which of the b games sample (the others take the likeliest tokens); plain bools,
        so that asking costs no device sync."""
        greedy = [self.greedy] * b if isinstance(self.greedy, bool) else list(self.greedy)
        if len(greedy) != b:
            raise ValueError(f"greedy has {len(greedy)} flags for a batch of {b} games")
        return [not g and self.temperature > 0 for g in greedy]

    def _sampling(self, sampling_games: list[bool]) -> Sampling:
        """Tensors, so a new temperature (+/- in the app) does not recompile; once per frame."""
        return (
            torch.tensor(1.0 / self.temperature if self.temperature > 0 else 1.0),
            # The nucleus never changes a greedy pick: no sort then.
            torch.tensor(float(self.top_p)) if self.top_p < 1 and any(sampling_games) else None,
        )

    def _gumbel(self, sampling: list[bool]) -> torch.Tensor:
        """The frame's sampling noise (B, K + 1, num_codes): row j picks the token after the
        frame's j-th input (the action, then its tokens); the last input predicts nothing.
        Zero for the games that do not sample."""
        k, v, b = self.cfg.tokens_per_frame, self.cfg.num_codes, len(sampling)
        noise = torch.zeros(b, self.layout.length, v, device=self.device)
        if any(sampling):  # Gumbel(0, 1); finite (from a uniform > 0), so that a nucleus of
            # one token is never all -inf
            uniform = torch.rand(b, k, v, generator=self.generator, device=self.device)
            noise[:, :k] = -torch.log(
                -torch.log(uniform.clamp_min_(torch.finfo(uniform.dtype).tiny))
            )
            if not all(sampling):
                noise[[i for i, s in enumerate(sampling) if not s]] = 0.0
        return noise

    def _forward(
        self, tokens: torch.Tensor, gumbel: torch.Tensor, sampling: Sampling
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Read (B, T) tokens after the cached ones -> hidden, the sampled next tokens, their
        keys/values (the caller appends those it keeps)."""
        self.forwards += 1
        position, kv = self.cache.position, self.cache.kv
        return self._extend_and_sample(tokens, position, kv, *sampling, gumbel)

    def _sequential(
        self, block: torch.Tensor, gumbel: torch.Tensor, sampling: Sampling
    ) -> torch.Tensor:
        """Fill `block` (B, K+1: the action, then the frame's tokens to generate) one token at
        a time; returns the hidden state at the action."""
        h_action = None
        for j in range(block.shape[1]):
            h, sampled, new_kv = self._forward(block[:, j : j + 1], gumbel[:, j : j + 1], sampling)
            self.cache.append(new_kv)
            h_action = h[:, 0] if h_action is None else h_action
            if j + 1 < block.shape[1]:
                block[:, j + 1] = sampled[:, 0]
        return h_action

    def _speculative(
        self, block: torch.Tensor, gumbel: torch.Tensor, sampling: Sampling
    ) -> torch.Tensor:
        """Fill `block` as _sequential does (the same tokens for the same noise, up to float
        rounding: a 17-token forward rounds differently from 17 one-token ones), in fewer
        forwards: most of a frame repeats the frame before, so `block` starts as the action +
        the last frame's 16 tokens (a guess), and one forward over all of it checks every
        guess at once; everything up to the first token that the sampling changes (in any
        game of the batch) is kept, and the next forward starts from there. A frame costs
        1 + (number of changed tokens) forwards: it pays while fewer than ~7 of 16 change."""
        n_tokens, start, h_action = block.shape[1], 0, None
        while start < n_tokens:
            # Padded at the end to K+1 inputs (one compiled shape); the padding is thrown away.
            window = torch.nn.functional.pad(block[:, start:], (0, start))
            h, sampled, new_kv = self._forward(
                window, torch.nn.functional.pad(gumbel[:, start:], (0, 0, 0, start)), sampling
            )
            h_action = h[:, 0] if h_action is None else h_action
            guesses = n_tokens - 1 - start  # sampled[:, i] is block[:, start + i + 1]
            wrong = (sampled[:, :guesses] != block[:, start + 1 :]).any(0).tolist()
            kept = wrong.index(True) if True in wrong else guesses
            self.cache.append(new_kv[:, :, :, :, : kept + 1])  # inputs start .. start+kept
            if kept < guesses:
                block[:, start + kept + 1] = sampled[:, kept]
            start += kept + 1
        return h_action

    @torch.inference_mode()
    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Imagine one step: (B,) actions -> frames (B, H, W, 3) uint8, rewards (B,) in
        {-1, 0, 1}, ends (B,) bool."""
        if self.cache is None:
            raise RuntimeError("call reset(frames) before step(actions)")
        if self.cache.length + self.layout.length > self.cache.capacity:
            self.frame_tokens = self.frame_tokens[:, -self.keep_frames :]
            self.actions = (
                self.actions[:, -(self.keep_frames - 1) :]
                if self.keep_frames > 1
                else self.actions[:, :0]
            )
            self._prefill()
        actions = actions.to(self.device).long().view(-1)
        sampling_games = self._sampling_games(len(actions))
        sampling = self._sampling(sampling_games)
        block = torch.cat([actions[:, None] + self.cfg.num_codes, self.frame_tokens[:, -1]], 1)
        speculate = self.speculative if self.speculative is not None else len(actions) == 1
        generate = self._speculative if speculate else self._sequential
        h = generate(block, self._gumbel(sampling_games), sampling)
        rewards = self.world_model.reward_head(h).argmax(-1) - 1
        ends = self.world_model.end_head(h).argmax(-1) == 1
        tokens = block[:, 1:]
        self.frame_tokens = torch.cat([self.frame_tokens, tokens[:, None]], dim=1)
        self.actions = torch.cat([self.actions, actions[:, None]], dim=1)
        frames = to_uint8_frames(self._decode(tokens.contiguous()))
        return frames, rewards.float(), ends
