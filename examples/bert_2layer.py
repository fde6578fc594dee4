"""A tiny 2-layer BERT encoder (Hugging Face ``BertModel``), random weights, for tests.

2 layers, hidden 64, 4 heads, intermediate 128, vocab 512, max positions 64.
Input: ``input_ids`` of shape (1, 16) int64 (no attention mask: every token attends).
Output: ``last_hidden_state`` of shape (1, 16, 64) float32. Builds offline (no download).
"""

import os

import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class EncoderHidden(nn.Module):
    """Wraps a Hugging Face encoder so that forward(input_ids) returns last_hidden_state."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids: (batch, seq) int64 -> last_hidden_state (batch, seq, hidden) float32."""
        return self.encoder(input_ids=input_ids, return_dict=False)[0]


def get_model() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """Build the 2-layer BERT with seeded random weights and a (1, 16) int64 token batch."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        num_hidden_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        intermediate_size=128,
        vocab_size=512,
        max_position_embeddings=64,
        attn_implementation="eager",
    )
    encoder = BertModel(config, add_pooling_layer=False).eval()
    input_ids = torch.randint(0, config.vocab_size, (1, 16), dtype=torch.int64)
    return EncoderHidden(encoder).eval(), (input_ids,)
