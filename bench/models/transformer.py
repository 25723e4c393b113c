"""A small decoder-only (causal) transformer that exposes its attention maps.

GPT-style: token embedding + learned absolute position embedding, pre-LayerNorm blocks of causal multi-head
self-attention and a GELU MLP, a final LayerNorm and a linear read-out to the vocabulary. Attention is written
out (not ``scaled_dot_product_attention``) so that every forward pass can hand back the attention probabilities
of every layer, which interpretability metrics (e.g. iteration heads) read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from bench.harness.errors import BenchError


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if width % n_heads:
            raise BenchError(
                f"transformer width {width} is not a multiple of n_heads {n_heads}; change model.width or model.n_heads"
            )
        self.n_heads, self.head_dim = n_heads, width // n_heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """``h`` (B, T, width) -> (output (B, T, width), attention probabilities (B, heads, T, T))."""
        b, t, w = h.shape
        q, k, v = self.qkv(h).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        causal = torch.ones(t, t, dtype=torch.bool, device=h.device).triu(1)
        attn = scores.masked_fill(causal, float("-inf")).softmax(dim=-1)
        out = (self.dropout(attn) @ v).transpose(1, 2).reshape(b, t, w)
        return self.out(out), attn


class Block(nn.Module):
    """Pre-LayerNorm transformer block: h + attn(ln(h)), then h + mlp(ln(h))."""

    def __init__(self, width: int, n_heads: int, mlp_ratio: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, n_heads, dropout)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width), nn.Dropout(dropout)
        )

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        a, attn = self.attn(self.ln1(h))
        h = h + a
        return h + self.mlp(self.ln2(h)), attn


class Transformer(nn.Module):
    """Causal transformer over token sequences: ``forward(tokens (B, T)) -> logits (B, T, num_classes)``.

    Args:
        input_shape: ``(T,)``, the sequence length of the data (the harness passes it from the datamodule);
            it must fit in ``context``.
        num_classes: output vocabulary size (the harness passes the datamodule's ``num_classes``).
        vocab_size: input vocabulary size; ``None`` = ``num_classes`` (a language model).
        context: number of learned positions; ``None`` = the data's sequence length.
        width, n_layers, n_heads, mlp_ratio, dropout: the usual.

    ``features(x)`` is the final-LayerNorm residual stream (B, T, width), ``classifier`` the read-out.
    ``forward_with_attention(x)`` also returns the attention probabilities, one (B, heads, T, T) tensor per layer.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        vocab_size: int | None = None,
        context: int | None = None,
        width: int = 64,
        n_layers: int = 2,
        n_heads: int = 1,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        seq_len = int(input_shape[0]) if len(input_shape) else 0
        self.context = int(context) if context is not None else seq_len
        if seq_len > self.context:
            raise BenchError(
                f"sequences of length {seq_len} do not fit the transformer's context of {self.context} "
                f"positions; raise model.context to >= {seq_len} or shorten the sequences"
            )
        self.vocab_size = int(vocab_size) if vocab_size is not None else int(num_classes)
        self.token_embedding = nn.Embedding(self.vocab_size, width)
        self.position_embedding = nn.Embedding(self.context, width)
        self.blocks = nn.ModuleList(Block(width, n_heads, mlp_ratio, dropout) for _ in range(n_layers))
        self.ln_final = nn.LayerNorm(width)
        self.classifier = nn.Linear(width, num_classes)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # GPT-2 initialisation: N(0, 0.02) weights, zero biases
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def _run(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        t = x.shape[1]
        if t > self.context:
            raise BenchError(f"input of length {t} exceeds the transformer's context of {self.context} positions")
        h = self.token_embedding(x) + self.position_embedding(torch.arange(t, device=x.device))
        maps = []
        for block in self.blocks:
            h, attn = block(h)
            maps.append(attn)
        return self.ln_final(h), maps

    def features(self, x: Tensor) -> Tensor:
        return self._run(x)[0]

    def forward_with_attention(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        h, maps = self._run(x)
        return self.classifier(h), maps

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self._run(x)[0])
