"""A GPT (nanoGPT-style) with a key/value cache for fast autoregressive generation."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
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
        # `length` again, as a tensor on the device: Transformer.step takes the position as
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
        """Store one token's keys/values (L, 2, B, H, hd), as returned by Transformer.step."""
        self.kv.select(4, self.length).copy_(new_kv)
        self.advance(1)


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
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
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
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(b, t, d)))

    def step(
        self, x: torch.Tensor, layer_kv: torch.Tensor, cache_bias: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One new token (inference): x (B, D); `layer_kv` (2, B, H, capacity, hd) read only,
        `cache_bias` (capacity,) 0 for filled slots and -inf for the rest. Returns the output
        (B, D) and the token's own keys/values (2, B, H, hd)."""
        b, d = x.shape
        hd = d // self.n_heads
        q, k, v = self.qkv(x).view(b, 3, self.n_heads, hd).unbind(1)  # (B, H, hd) each
        cached_scores = torch.einsum("bhd,bhcd->bhc", q, layer_kv[0]) + cache_bias
        own_score = (q * k).sum(-1, keepdim=True)
        probs = (torch.cat([cached_scores, own_score], -1) / math.sqrt(hd)).softmax(-1)
        y = torch.einsum("bhc,bhcd->bhd", probs[..., :-1], layer_kv[1]) + probs[..., -1:] * v
        return self.proj(y.reshape(b, d)), torch.stack([k, v])


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

    def step(
        self, x: torch.Tensor, layer_kv: torch.Tensor, cache_bias: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        attended, new_kv = self.attn.step(self.ln_1(x), layer_kv, cache_bias)
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

    def step(
        self, x: torch.Tensor, position: torch.Tensor, kv: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Generation, one token per sequence: x (B, D) embeddings of tokens at `position` (a
        0-dim long tensor: the number of cached tokens), `kv` a KVCache's (L, 2, B, H, capacity,
        hd), read only. Returns the hidden states (B, D) and the new keys/values
        (L, 2, B, H, hd) for `KVCache.append`.

        Unlike forward(), every shape here is fixed: unfilled cache slots are masked rather
        than sliced off and the position is a tensor, so torch.compile turns a whole token
        step into one graph (about 2x faster on CPU, where per-op overhead dominates).
        Inference only: no dropout. The caller checks there is room (`position < capacity`):
        an index past the position table is not caught inside a compiled graph."""
        slots = torch.arange(kv.shape[4], device=x.device)
        cache_bias = torch.zeros(slots.shape, dtype=x.dtype, device=x.device).masked_fill(
            slots >= position, float("-inf")
        )
        x = x + self.pos_emb(position)
        new_kv = []
        for i, block in enumerate(self.blocks):
            x, token_kv = block.step(x, kv[i], cache_bias)
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
