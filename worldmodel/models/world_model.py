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

    def __post_init__(self) -> None:
        if self.max_frames < 2:
            raise ValueError(
                f"max_frames must be >= 2 (a frame and the next), got {self.max_frames}"
            )

    @property
    def layout(self) -> "FrameLayout":
        return FrameLayout(self.tokens_per_frame)

    @property
    def block_size(self) -> int:
        return self.max_frames * self.layout.length


@dataclass(frozen=True)
class FrameLayout:
    """One frame's inputs in the sequence: [token 1 .. token K, the action taken on it]."""

    tokens_per_frame: int

    @property
    def length(self) -> int:
        return self.tokens_per_frame + 1

    @property
    def action(self) -> int:
        """The action's place in a frame's inputs."""
        return self.tokens_per_frame

    def action_positions(self, frames: int, device: torch.device | None = None) -> torch.Tensor:
        """Where each of `frames` frames' action sits in the sequence."""
        return torch.arange(frames, device=device) * self.length + self.action

    def frame_of(self, positions: torch.Tensor) -> torch.Tensor:
        return positions // self.length

    def is_frame_token(self, positions: torch.Tensor) -> torch.Tensor:
        return positions % self.length != self.action


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
        init_gpt2_weights(self, cfg.n_layers)

    def interleave(self, frame_tokens: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """(B, L, K) frame tokens and (B, L) actions -> (B, L * layout.length) one sequence."""
        return torch.cat([frame_tokens, actions[..., None] + self.cfg.num_codes], dim=-1).flatten(1)

    def new_cache(self, batch: int, device: torch.device) -> KVCache:
        return KVCache(self.transformer_cfg, batch, device)

    def hidden(self, tokens: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        return self.transformer(self.embed(tokens), cache)

    def extend(
        self,
        tokens: torch.Tensor,
        position: torch.Tensor,
        kv: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Generation: T tokens per sequence (B, T) after the `position` cached ones, against
        a cache's `kv` (read only) -> hidden (B, T, D), next-token logits (B, T, num_codes),
        the tokens' keys/values. See Transformer.extend."""
        h, new_kv = self.transformer.extend(self.embed(tokens), position, kv)
        return h, self.obs_head(h), new_kv

    def extend_and_sample(
        self,
        tokens: torch.Tensor,
        position: torch.Tensor,
        kv: torch.Tensor,
        inv_temperature: torch.Tensor,
        top_p: torch.Tensor | None,
        gumbel: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """extend() that also picks each position's next token (gumbel_pick, with `gumbel`
        (B, T, num_codes); inside the compiled graph it costs next to nothing).
        Returns hidden (B, T, D), tokens (B, T), keys/values."""
        h, logits, new_kv = self.extend(tokens, position, kv)
        return h, gumbel_pick(logits, inv_temperature, top_p, gumbel), new_kv

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None) -> WorldModelOutput:
        h = self.hidden(tokens, cache)
        return WorldModelOutput(h, self.obs_head(h), self.reward_head(h), self.end_head(h))

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """Weight decay on matrices of linear layers only (not norms, biases, embeddings)."""
        decay, no_decay = [], []
        for module in self.modules():
            for name, p in module.named_parameters(recurse=False):
                is_matrix = isinstance(module, nn.Linear) and name == "weight"
                (decay if is_matrix else no_decay).append(p)
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
