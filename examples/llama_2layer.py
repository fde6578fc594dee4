"""A tiny 2-layer Llama (Hugging Face ``LlamaForCausalLM``) with grouped-query attention.

2 layers, hidden 64, 4 query heads, 2 KV heads, MLP intermediate 128, vocab 512.
Input: ``input_ids`` of shape (1, 16) int64. Output: logits of shape (1, 16, 512) float32.
The rotary embedding's ``inv_freq`` is a non-persistent buffer (not in the state dict).
Builds offline (no download).
"""

import os

import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class CausalLMLogits(nn.Module):
    """Wraps a Hugging Face causal LM so that forward(input_ids) returns only the logits."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids: (batch, seq) int64 -> logits (batch, seq, vocab) float32."""
        return self.lm(input_ids=input_ids, use_cache=False, return_dict=False)[0]


def get_model() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """Build the 2-layer Llama with seeded random weights and a (1, 16) int64 token batch."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        num_hidden_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=512,
        max_position_embeddings=64,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        attn_implementation="eager",
    )
    lm = LlamaForCausalLM(config).eval()
    input_ids = torch.randint(0, config.vocab_size, (1, 16), dtype=torch.int64)
    return CausalLMLogits(lm).eval(), (input_ids,)
