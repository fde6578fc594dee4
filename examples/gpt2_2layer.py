"""A tiny 2-layer GPT-2 (Hugging Face ``GPT2LMHeadModel``), random weights, for tests.

n_layer=2, n_embd=64, n_head=4, vocab 512, n_positions 64. Input: ``input_ids`` of shape
(1, 16) int64. Output: logits of shape (1, 16, 512) float32. ``wte`` and ``lm_head`` are tied.
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
    """Build the 2-layer GPT-2 with seeded random weights and a (1, 16) int64 token batch."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=2,
        n_embd=64,
        n_head=4,
        vocab_size=512,
        n_positions=64,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation="eager",
    )
    lm = GPT2LMHeadModel(config).eval()
    input_ids = torch.randint(0, config.vocab_size, (1, 16), dtype=torch.int64)
    return CausalLMLogits(lm).eval(), (input_ids,)
