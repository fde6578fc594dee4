"""GPT-2 small (Hugging Face ``GPT2LMHeadModel`` with the default ``GPT2Config``), random weights.

12 layers, hidden 768, 12 heads, vocab 50257. Input: ``input_ids`` of shape (1, 128) int64.
Output: logits of shape (1, 128, 50257) float32. Builds offline (no download).
"""

import os

import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class CausalLMLogits(nn.Module):
    """Wraps a Hugging Face causal LM so that forward(input_ids) returns only the logits.

    ``use_cache=False`` and ``return_dict=False`` keep the exported graph free of KV caches
    and output dataclasses.
    """

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids: (batch, seq) int64 -> logits (batch, seq, vocab) float32."""
        return self.lm(input_ids=input_ids, use_cache=False, return_dict=False)[0]


def get_model() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """Build GPT-2 small with seeded random weights and a (1, 128) int64 token batch."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(attn_implementation="eager")
    lm = GPT2LMHeadModel(config).eval()
    input_ids = torch.randint(0, config.vocab_size, (1, 128), dtype=torch.int64)
    return CausalLMLogits(lm).eval(), (input_ids,)
