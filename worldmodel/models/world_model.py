"""The world model: a GPT over frames-as-tokens and actions that predicts what comes next.

The sequence is z_0^1..z_0^K, a_0, z_1^1..z_1^K, a_1, ... (K tokens per frame, then the
action). Each position predicts the next token: the action position and the first K-1
tokens of a frame predict the next frame's tokens; the action position also predicts
the reward (sign: -1/0/+1) and whether the episode ended.
"""

from dataclasses import dataclass

import torch
from torch import nn

from worldmodel.models.transformer import KVCache, Transformer, TransformerConfig, init_gpt2_weights


def nucleus(logits: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Nucleus (top-p) truncation: logits (..., V) with -inf outside the smallest set of most
    likely tokens whose probability reaches `top_p` (a 0-dim tensor; 1 keeps every token).
    The most likely token always stays, so greedy picks are unchanged."""
    # Stable: tied tokens keep one order however the tokens were batched (speculative checks).
    ordered, order = logits.sort(dim=-1, descending=True, stable=True)
    probs = ordered.softmax(-1)
    before = probs.cumsum(-1) - probs  # the mass of the tokens more likely than each
    drop = (before >= top_p) & (top_p < 1)  # cumsum's rounding must not cut at top_p = 1
    drop[..., 0] = False  # the most likely token, whatever top_p
    # `order` is a permutation: scattering the sorted mask through it unsorts it.
    return logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))


def gumbel_pick(
    logits: torch.Tensor,
    inv_temperature: torch.Tensor,
    top_p: torch.Tensor | None,
    gumbel: torch.Tensor,
) -> torch.Tensor:
    """Gumbel-max: the argmax of logits / temperature + `gumbel` noise (same shape) is a sample
    of softmax(logits / temperature), restricted to its `top_p` nucleus unless that is None;
    with zero noise, the greedy token. Fixed noise makes a sample repeatable (up to float
    rounding) however the tokens are batched (see LearnedGame's speculative schedule)."""
    logits = logits * inv_temperature
    if top_p is not None:
        logits = nucleus(logits, top_p)
    return (logits + gumbel).argmax(-1)


# (K * num_codes, r) input and (K, num_codes, r) output place vectors, or None without them
PlaceTables = tuple[torch.Tensor, torch.Tensor] | None


@dataclass
class WorldModelConfig:
    tokens_per_frame: int = 16
    num_codes: int = 512
    num_actions: int = 6
    max_frames: int = 20  # context length in frames
    n_layers: int = 10
    n_heads: int = 4
    d_model: int = 256
    dropout: float = 0.1
    # With a codebook per token position (the tokenizer's codebook_per_position) an id means
    # something else at each place in the frame, while the embedding and the output head are
    # one row per id. place_rank > 0 gives every (place, id) pair a private vector of this
    # size, projected into the input embedding and into the output logits; the projections
    # start at zero, so the model starts as the one without them (world_model.init_from).
    place_rank: int = 0
    # True: the place vectors are not free parameters but a projection of what each token
    # draws at its place (its decoded patch, set_place_content), so that tokens which draw
    # alike (a ball one pixel apart) share what the model learns of them, where free vectors
    # (and the embedding rows) must each be learned from their own few appearances.
    place_content: bool = False
    patch_size: int = 16  # a token's patch of the frame, in pixels (from the tokenizer)

    def __post_init__(self) -> None:
        if self.place_content and not self.place_rank:
            raise ValueError("place_content needs place vectors: set place_rank > 0")
        if self.max_frames < 2:
            raise ValueError(
                f"max_frames must be >= 2 (a frame and the next), got {self.max_frames}"
            )

    @property
    def place_content_dim(self) -> int:
        """Numbers per (place, token) in the content: an RGB patch."""
        return 3 * self.patch_size**2

    @property
    def block_len(self) -> int:
        return self.tokens_per_frame + 1

    @property
    def block_size(self) -> int:
        return self.max_frames * self.block_len


@dataclass
class WorldModelOutput:
    hidden: torch.Tensor  # (B, T, D)
    obs_logits: torch.Tensor  # (B, T, num_codes): the next token, where it is a frame token
    reward_logits: torch.Tensor  # (B, T, 3): classes for reward sign -1, 0, +1
    end_logits: torch.Tensor  # (B, T, 2)


def head(d_model: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, n_out))


class WorldModel(nn.Module):
    def __init__(self, cfg: WorldModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.transformer_cfg = TransformerConfig(
            cfg.block_size, cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.dropout
        )
        # Frame tokens and actions share one table: actions are offset past the codebook.
        self.embed = nn.Embedding(cfg.num_codes + cfg.num_actions, cfg.d_model)
        self.transformer = Transformer(self.transformer_cfg)
        self.obs_head = head(cfg.d_model, cfg.num_codes)
        self.reward_head = head(cfg.d_model, 3)
        self.end_head = head(cfg.d_model, 2)
        if cfg.place_rank:
            places, rank = cfg.tokens_per_frame, cfg.place_rank
            if cfg.place_content:
                self.place_content_proj = nn.Linear(cfg.place_content_dim, rank)
                # (K, num_codes, place_content_dim): from the tokenizer, so not saved
                self.register_buffer("place_content_table", None, persistent=False)
            else:
                self.place_in = nn.Embedding(places * cfg.num_codes, rank)
                self.place_out = nn.Parameter(torch.empty(places, cfg.num_codes, rank))
            self.place_in_proj = nn.Linear(rank, cfg.d_model, bias=False)
            self.place_out_proj = nn.Linear(cfg.d_model, rank, bias=False)
        init_gpt2_weights(self, cfg.n_layers)
        if cfg.place_content:  # unit-variance place vectors from unit-variance content
            nn.init.normal_(self.place_content_proj.weight, std=cfg.place_content_dim**-0.5)
        if cfg.place_rank:
            nn.init.zeros_(self.place_in_proj.weight)
            nn.init.zeros_(self.place_out_proj.weight)

    def set_place_content(self, patches: torch.Tensor) -> None:
        """What each token draws at each place, (K, num_codes, 3, p, p)
        (Tokenizer.token_patches), for place_content."""
        expected = (self.cfg.tokens_per_frame, self.cfg.num_codes, self.cfg.place_content_dim)
        if patches.dim() < 3 or tuple(patches.flatten(2).shape) != expected:
            raise ValueError(f"place content of shape {tuple(patches.shape)}, expected {expected}")
        content = patches.flatten(2).to(self.embed.weight.device, self.embed.weight.dtype)
        # What sets a token apart from the others at its place, in units of the spread of all.
        content = content - content.mean(dim=1, keepdim=True)
        self.place_content_table = content / content.std().clamp_min(1e-6)

    def place_tables(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The place vectors read with the input tokens, (K * num_codes, r), and the ones the
        output scores, (K, num_codes, r); None without place vectors. Content vectors are a
        projection of all the content, so generation makes them once per game
        (LearnedGame.reset) and passes them in; a forward without them makes its own."""
        if not self.cfg.place_rank:
            return None
        if not self.cfg.place_content:
            return self.place_in.weight, self.place_out
        if self.place_content_table is None:
            raise RuntimeError("place_content: call set_place_content(patches) first")
        vectors = self.place_content_proj(self.place_content_table)
        return vectors.flatten(0, 1), vectors

    def interleave(self, frame_tokens: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """(B, L, K) frame tokens and (B, L) actions -> (B, L*(K+1)) one sequence."""
        return torch.cat([frame_tokens, actions[..., None] + self.cfg.num_codes], dim=-1).flatten(1)

    def new_cache(self, batch: int, device: torch.device) -> KVCache:
        return KVCache(self.transformer_cfg, batch, device)

    def _slots(self, start: int | torch.Tensor, n: int) -> torch.Tensor:
        """Where in its frame block (0..K-1 a frame token, K the action) each of n tokens
        from sequence position `start` on sits."""
        device = self.embed.weight.device
        return (start + torch.arange(n, device=device)) % self.cfg.block_len

    def _embed(
        self, tokens: torch.Tensor, start: int | torch.Tensor, places: PlaceTables
    ) -> torch.Tensor:
        """(B, T) tokens that start at sequence position `start` -> (B, T, D)."""
        x = self.embed(tokens)
        if places is None:
            return x
        k, v = self.cfg.tokens_per_frame, self.cfg.num_codes
        slots = self._slots(start, tokens.shape[1])
        # Action slots look up a frame-token row (ids clamped) that the mask then drops.
        pair = slots.clamp(max=k - 1) * v + tokens.clamp(max=v - 1)
        inputs, _ = places
        return x + self.place_in_proj(inputs[pair]) * (slots < k)[:, None]

    def _obs_logits(
        self, h: torch.Tensor, start: int | torch.Tensor, places: PlaceTables
    ) -> torch.Tensor:
        """Next-token logits (B, T, num_codes) from the hidden states of tokens at `start`..:
        the token after slot s is the frame token at place s + 1 (after the action: place 0)."""
        logits = self.obs_head(h)
        if places is None:
            return logits
        k = self.cfg.tokens_per_frame
        # The last frame token predicts the action: no frame token, any place will do.
        next_places = ((self._slots(start, h.shape[1]) + 1) % self.cfg.block_len).clamp(max=k - 1)
        _, outputs = places
        return logits + torch.einsum("btr,tvr->btv", self.place_out_proj(h), outputs[next_places])

    def hidden(
        self, tokens: torch.Tensor, cache: KVCache | None = None, places: PlaceTables = None
    ) -> torch.Tensor:
        """`places`: this model's place_tables(), if the caller has them already."""
        places = places if places is not None else self.place_tables()
        start = 0 if cache is None else cache.length
        return self.transformer(self._embed(tokens, start, places), cache)

    def extend(
        self,
        tokens: torch.Tensor,
        position: torch.Tensor,
        kv: torch.Tensor,
        places: PlaceTables = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Generation: T tokens per sequence (B, T) after the `position` cached ones, against
        a cache's `kv` (read only) -> hidden (B, T, D), next-token logits (B, T, num_codes),
        the tokens' keys/values. See Transformer.extend. `places`: as in hidden()."""
        places = places if places is not None else self.place_tables()
        h, new_kv = self.transformer.extend(self._embed(tokens, position, places), position, kv)
        return h, self._obs_logits(h, position, places), new_kv

    def extend_and_sample(
        self,
        tokens: torch.Tensor,
        position: torch.Tensor,
        kv: torch.Tensor,
        places: PlaceTables,
        inv_temperature: torch.Tensor,
        top_p: torch.Tensor | None,
        gumbel: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """extend() that also picks each position's next token (gumbel_pick, with `gumbel`
        (B, T, num_codes); inside the compiled graph it costs next to nothing).
        Returns hidden (B, T, D), tokens (B, T), keys/values."""
        h, logits, new_kv = self.extend(tokens, position, kv, places)
        return h, gumbel_pick(logits, inv_temperature, top_p, gumbel), new_kv

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None) -> WorldModelOutput:
        start = 0 if cache is None else cache.length  # before hidden() advances the cache
        places = self.place_tables()  # once per forward: a projection of all the content
        h = self.hidden(tokens, cache, places)
        obs_logits = self._obs_logits(h, start, places)
        return WorldModelOutput(h, obs_logits, self.reward_head(h), self.end_head(h))

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """Weight decay on matrices of linear layers only (not norms, biases, embeddings: the
        free place vectors' tables are embeddings too; all projections, the content one
        too, are linear layers)."""
        decay, no_decay = [], []
        for module in self.modules():
            for name, p in module.named_parameters(recurse=False):
                is_matrix = isinstance(module, nn.Linear) and name == "weight"
                (decay if is_matrix else no_decay).append(p)
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
