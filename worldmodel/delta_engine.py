"""The learned game over context-aware tokens (Delta-IRIS); `LearnedGame(tokenizer,
world_model)` comes here when the world model is a DeltaWorldModel.

A step reads the action, samples the next frame's K tokens one at a time (each forward reads
one input after the cached ones), draws the frame from the tokens and the frame before it,
embeds it and reads it with the last token in the next step's first forward: K forwards a
step. The last frames are always the ones the model drew: the dream feeds on its own output,
as in play. Speculation does not pay here: a Delta token seldom repeats the step before's.
With the score slot, who scored comes from the action's forward (the score head) and is the
step's reward too, and the frame's score rows are drawn from the frame before's.
"""

import torch

from worldmodel.compiled import CompiledOrEager
from worldmodel.engine import LearnedGame
from worldmodel.frames import to_uint8_frames, windows
from worldmodel.models.delta_tokenizer import DeltaTokenizer
from worldmodel.models.delta_world_model import DeltaWorldModel
from worldmodel.models.score_slot import player_reward


class DeltaGame(LearnedGame):
    def __init__(self, tokenizer: DeltaTokenizer, world_model: DeltaWorldModel, **options) -> None:
        if options.get("speculative"):
            raise ValueError(
                "speculative generation is for IRIS tokens; Delta tokens go one by one"
            )
        slot, head = tokenizer.cfg.score_slot, world_model.cfg.score_change
        if slot != head:
            raise ValueError(
                "the tokenizer's score slot and the world model's score head go together "
                f"(score_slot={slot}, score_change={head})"
            )
        super().__init__(tokenizer, world_model, **options)
        self._embed = CompiledOrEager(
            world_model.embed_frames,
            options.get("compile", False),
            options.get("compile_in_background", False),
        )
        self._compiled_parts.append(self._embed)
        self.embeddings: torch.Tensor | None = None  # (B, n, D) the frames in context
        self.tokens: torch.Tensor | None = None  # (B, n-1, K) each frame's given the one before
        self.recent: torch.Tensor | None = None  # (B, c, H, W, 3) uint8, the last c frames
        self.unread: torch.Tensor | None = None  # (B, u, D) inputs the cache has not read yet

    @property
    def batch_size(self) -> int:
        return 0 if self.recent is None else self.recent.shape[0]

    @torch.inference_mode()
    def reset(self, frames: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        frames = self._context_frames(frames)
        b, c = frames.shape[:2]
        actions = torch.zeros(b, 0, dtype=torch.long) if actions is None else actions
        actions = actions.to(self.device).long()
        if actions.shape != (b, c - 1):
            raise ValueError(f"{c} context frames need {(b, c - 1)} actions, got {actions.shape}")
        k = self.cfg.tokens_per_frame
        self.tokens = torch.zeros(b, c - 1, k, dtype=torch.long, device=self.device)
        context = windows(frames, self.tokenizer.cfg.context_frames)  # (B, c, n, H, W, 3)
        if c > 1:
            pairs = (context[:, :-1].flatten(0, 1), actions.flatten(), frames[:, 1:].flatten(0, 1))
            _, self.tokens = self.tokenizer.split_score(self.tokenizer.encode(*pairs))
            self.tokens = self.tokens.view(b, c - 1, k)
        self.embeddings = self.world_model.embed_frames(frames)
        self.actions, self.recent = actions, context[:, -1]
        self.cache = self.world_model.new_cache(b, self.device)
        self._prefill()
        return self.recent[:, -1]

    @torch.inference_mode()
    def _prefill(self) -> None:
        """Read the context's whole steps in one forward; its last frame waits for the action."""
        self.cache.reset()
        wm = self.world_model
        refs = wm.block_references(self.tokens)
        whole = wm.sequence(self.embeddings[:, :-1], self.actions, self.tokens, refs)
        if whole.shape[1]:
            self.forwards += 1
            self.cache.append(wm.extend(whole, self.cache.position, self.cache.kv)[1])
        self.unread = self.embeddings[:, -1:]

    def _slide_window(self) -> None:
        """Drop the oldest steps, keeping the last `keep_frames` frames, and re-read those."""
        drop = self.embeddings.shape[1] - self.keep_frames
        self.embeddings = self.embeddings[:, drop:]
        self.actions, self.tokens = self.actions[:, drop:], self.tokens[:, drop:]
        self._prefill()

    @torch.inference_mode()
    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.cache is None:
            raise RuntimeError("call reset(frames) before step(actions)")
        k = self.cfg.tokens_per_frame
        # This step reads the unread inputs, the action and K-1 tokens (the last token waits
        # for the frame it draws).
        if self.cache.length + self.unread.shape[1] + k > self.cfg.predicting_positions:
            self._slide_window()
        actions = actions.to(self.device).long().view(-1)
        sampling_games = self._sampling_games(len(actions))
        sampling = self._sampling(sampling_games)
        gumbel = self._gumbel(sampling_games)
        x = torch.cat([self.unread, self.world_model.action_embed(actions)[:, None]], 1)
        # The frame before's tokens (zeros, "unknown", for a game started from one frame).
        before = (
            self.tokens[:, -1] if self.tokens.shape[1] else self.tokens.new_zeros(len(actions), k)
        )
        refs = self.world_model.references(before)  # (B, K) for the ball's motion, or None
        tokens, h_action = [], None
        for j in range(k):
            self.forwards += 1
            noise = gumbel[:, j : j + 1].expand(-1, x.shape[1], -1)  # the last input's counts
            ref = None if refs is None else refs[:, j : j + 1].expand(-1, x.shape[1])
            h, picked, new_kv = self._extend_and_sample(
                x, self.cache.position, self.cache.kv, *sampling, noise, ref
            )
            self.cache.append(new_kv)
            h_action = h[:, -1] if h_action is None else h_action
            tokens.append(picked[:, -1])
            x = self.world_model.embed_tokens(picked[:, -1:], None if ref is None else ref[:, -1:])
        tokens = torch.stack(tokens, 1)
        ends = self.world_model.end_head(h_action).argmax(-1) == 1
        if self.world_model.score_head is None:
            scored, rewards = None, self.world_model.reward_head(h_action).argmax(-1) - 1
        else:  # who scored is the point: the digits and the reward cannot disagree
            scored = self.world_model.score_head(h_action).argmax(-1)
            rewards = player_reward(scored)
        drawn_from = self.tokenizer.with_score(scored, tokens)
        frame = to_uint8_frames(self._decode(self.recent, actions, drawn_from))
        self.recent = torch.cat([self.recent[:, 1:], frame[:, None]], 1)
        embedding = self._embed(frame)
        self.unread = torch.cat([x, embedding[:, None]], 1)
        self.embeddings = torch.cat([self.embeddings, embedding[:, None]], 1)
        self.actions = torch.cat([self.actions, actions[:, None]], 1)
        self.tokens = torch.cat([self.tokens, tokens[:, None]], 1)
        return frame, rewards.float(), ends
