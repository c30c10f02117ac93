"""A GPT (nanoGPT-style) with a key/value cache for fast autoregressive generation."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


@dataclass
class TransformerConfig:
    block_size: int  # the longest sequence (in tokens) the model sees
    n_layers: int = 4
    n_heads: int = 4
    d_model: int = 256
    dropout: float = 0.1


class KVCache:
    """Preallocated keys/values for every layer; `length` tokens are filled."""

    def __init__(
        self,
        cfg: TransformerConfig,
        batch: int,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        shape = (cfg.n_layers, 2, batch, cfg.n_heads, cfg.block_size, cfg.d_model // cfg.n_heads)
        self.kv = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0
        # `length` again, as a tensor on the device: Transformer.extend takes the position as
        # a tensor (one compiled graph for every position) without a host copy per token.
        self.position = torch.zeros((), dtype=torch.long, device=device)

    @property
    def capacity(self) -> int:
        return self.kv.shape[4]

    def reset(self) -> None:
        self.length = 0
        self.position.zero_()

    def advance(self, n: int) -> None:
        if self.length + n > self.capacity:
            raise ValueError(f"{self.length + n} tokens exceed the cache's {self.capacity}")
        self.length += n
        self.position += n

    def append(self, new_kv: torch.Tensor) -> None:
        """Store the keys/values (L, 2, B, H, n, hd) of n tokens, as Transformer.extend returns
        them (or a prefix of them)."""
        start, n = self.length, new_kv.shape[4]
        self.advance(n)  # checks there is room first
        self.kv[:, :, :, :, start : start + n].copy_(new_kv)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.n_heads, self.dropout = cfg.n_heads, cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, layer_kv: torch.Tensor | None, start: int) -> torch.Tensor:
        """x (B, T, D). With `layer_kv` (2, B, H, capacity, hd) the new keys/values are written
        at [start, start+T) and attention covers everything before them too."""
        q, k, v = rearrange(self.qkv(x), "b t (qkv h d) -> qkv b h t d", qkv=3, h=self.n_heads)
        t = x.shape[1]
        if layer_kv is not None:
            layer_kv[0, :, :, start : start + t] = k
            layer_kv[1, :, :, start : start + t] = v
            k, v = layer_kv[0, :, :, : start + t], layer_kv[1, :, :, : start + t]
        if start == 0:
            mask, causal = None, True
        else:  # queries at positions start..start+t-1 see keys up to their own position
            rows = torch.arange(start, start + t, device=x.device)[:, None]
            mask, causal = rows >= torch.arange(start + t, device=x.device)[None, :], False
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=causal,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.resid_dropout(self.proj(rearrange(y, "b h t d -> b t (h d)")))

    def extend(
        self, x: torch.Tensor, layer_kv: torch.Tensor, bias: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """T new tokens (inference): x (B, T, D); `layer_kv` (2, B, H, capacity, hd) read only;
        `bias` (T, capacity + T) 0 where a query may look, -inf elsewhere. Returns the output
        (B, T, D) and the new tokens' keys/values (2, B, H, T, hd). The cache is not
        concatenated with the new keys (a copy of it per layer): the scores of both are."""
        q, k, v = rearrange(self.qkv(x), "b t (qkv h d) -> qkv b h t d", qkv=3, h=self.n_heads)
        capacity = layer_kv.shape[3]
        scores = torch.cat([q @ layer_kv[0].transpose(-1, -2), q @ k.transpose(-1, -2)], -1)
        probs = (scores / math.sqrt(q.shape[-1]) + bias).softmax(-1)
        y = probs[..., :capacity] @ layer_kv[1] + probs[..., capacity:] @ v
        return self.proj(rearrange(y, "b h t d -> b t (h d)")), torch.stack([k, v])


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, 4 * cfg.d_model),
            nn.GELU(),
            nn.Linear(4 * cfg.d_model, cfg.d_model),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: torch.Tensor, layer_kv: torch.Tensor | None, start: int) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), layer_kv, start)
        return x + self.mlp(self.ln_2(x))

    def extend(
        self, x: torch.Tensor, layer_kv: torch.Tensor, bias: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        attended, new_kv = self.attn.extend(self.ln_1(x), layer_kv, bias)
        x = x + attended
        return x + self.mlp(self.ln_2(x)), new_kv


class Transformer(nn.Module):
    """Embeddings in, hidden states out; the caller owns token embeddings and heads."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """x (B, T, D) embeddings of the tokens that follow the cache's `length` tokens."""
        start = 0 if cache is None else cache.length
        if start + x.shape[1] > self.cfg.block_size:
            raise ValueError(
                f"sequence of {start + x.shape[1]} tokens exceeds the block size "
                f"{self.cfg.block_size}"
            )
        positions = torch.arange(start, start + x.shape[1], device=x.device)
        x = self.drop(x + self.pos_emb(positions))
        for i, block in enumerate(self.blocks):
            x = block(x, None if cache is None else cache.kv[i], start)
        if cache is not None:
            cache.advance(x.shape[1])
        return self.ln_f(x)

    def extend(
        self, x: torch.Tensor, position: torch.Tensor, kv: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Generation: x (B, T, D) embeddings of T tokens that follow the `position` cached
        ones (a 0-dim long tensor), `kv` a KVCache's (L, 2, B, H, capacity, hd), read only.
        Returns the hidden states (B, T, D) and the new keys/values (L, 2, B, H, T, hd) for
        `KVCache.append` (all of them, or the first few).

        Unlike forward(), every shape here is fixed: unfilled cache slots are masked rather
        than sliced off and the position is a tensor, so torch.compile turns a whole call into
        one graph (about 2x faster on CPU, where per-op overhead dominates). Positions past
        the block size are clamped, so a caller may pad x with tokens it will throw away; it
        checks there is room for the ones it keeps (KVCache.append does). Inference only."""
        t, capacity = x.shape[1], kv.shape[4]
        slots = torch.arange(capacity, device=x.device)
        visible = torch.cat(
            [
                (slots < position).expand(t, capacity),
                torch.ones(t, t, dtype=torch.bool, device=x.device).tril(),
            ],
            dim=1,
        )
        bias = torch.zeros(visible.shape, dtype=x.dtype, device=x.device).masked_fill(
            ~visible, float("-inf")
        )
        positions = (position + torch.arange(t, device=x.device)).clamp(max=self.cfg.block_size - 1)
        x = x + self.pos_emb(positions)
        new_kv = []
        for i, block in enumerate(self.blocks):
            x, token_kv = block.extend(x, kv[i], bias)
            new_kv.append(token_kv)
        return self.ln_f(x), torch.stack(new_kv)


def init_gpt2_weights(module: nn.Module, n_layers: int) -> None:
    """GPT-2 init: N(0, 0.02), residual projections scaled down by sqrt(2 * n_layers)."""
    for name, p in module.named_parameters():
        if p.dim() < 2:
            continue
        std = (
            0.02 / math.sqrt(2 * n_layers)
            if name.endswith(("proj.weight", "mlp.2.weight"))
            else 0.02
        )
        nn.init.normal_(p, mean=0.0, std=std)
    for m in module.modules():
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
