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

    @property
    def capacity(self) -> int:
        return self.kv.shape[4]

    def reset(self) -> None:
        self.length = 0


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
        elif t == 1:  # one new token (generation): it may see every cached key
            mask, causal = None, False
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
            cache.length += x.shape[1]
        return self.ln_f(x)


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
