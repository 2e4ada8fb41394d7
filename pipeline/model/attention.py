"""Multi-head attention on top of `F.scaled_dot_product_attention`, with explicit key/value caching.

Dimension legend: B batch, H heads, Lq query length, Lk key length, D model width, Dh = D / H.

Keys and values are computed by `project_kv` and passed in, so the decoder can compute the
cross-attention K/V once per source sentence and append to the self-attention K/V step by step
without this module holding any state. Masks are boolean, True = may attend.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KeyValue = tuple[Tensor, Tensor]  # (B, H, Lk, Dh) each


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def _split_heads(self, x: Tensor) -> Tensor:
        B, L, D = x.shape
        return x.view(B, L, self.num_heads, D // self.num_heads).transpose(1, 2)  # (B, H, L, Dh)

    def project_kv(self, x: Tensor) -> KeyValue:
        return self._split_heads(self.k(x)), self._split_heads(self.v(x))

    def forward(self, x: Tensor, kv: KeyValue, attn_mask: Tensor | None) -> Tensor:
        """x (B, Lq, D) attends over kv; attn_mask broadcastable to (B, H, Lq, Lk) or None."""
        q = self._split_heads(self.q(x))  # (B, H, Lq, Dh)
        k, v = kv
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        B, H, Lq, Dh = y.shape
        return self.out(y.transpose(1, 2).reshape(B, Lq, H * Dh))


def padding_mask(token_mask: Tensor) -> Tensor:
    """(B, Lk) real-token mask -> (B, 1, 1, Lk) attention mask."""
    return token_mask[:, None, None, :]


def causal_mask(query_len: int, past_len: int, device: torch.device) -> Tensor | None:
    """(Lq, past + Lq): query i (at absolute position past + i) sees keys 0 .. past + i.
    None for a single query, which may see everything cached so far."""
    if query_len == 1:
        return None
    keys = torch.arange(past_len + query_len, device=device)
    queries = torch.arange(query_len, device=device)[:, None] + past_len
    return keys[None, :] <= queries
