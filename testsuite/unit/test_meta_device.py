"""Shape-only models (the meta device) compile, and decide exactly what the same model on
the CPU decides: factory ops (`torch.ones`, SDPA's and HF's masks) are retargeted to the CPU
before torch-mlir (`frontend/meta_device.py`). Pins transformers 5.23.0 (requirements.lock)
for the HF mask code."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rdu_compiler


class CausalSdpa(nn.Module):
    def __init__(self, hidden: int = 64, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden, bias=False)
        self.o = nn.Linear(hidden, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape
        q, k, v = (t.view(b, s, self.heads, -1).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(a.transpose(1, 2).reshape(b, s, h))


def _build(device: str) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    with torch.device(device):
        return CausalSdpa().eval(), (torch.randn(1, 32, 64),)


def _decisions(report: dict) -> dict:
    t = report["totals"]
    return {k: t[k] for k in ("sections", "kernels", "kernel_kinds", "flops", "hbm_bytes", "ddr_bytes", "estimated_s")}


def test_causal_sdpa_on_meta_compiles_like_on_cpu() -> None:
    meta = rdu_compiler.compile(*_build("meta"), fabric="sn40l")
    cpu = rdu_compiler.compile(*_build("cpu"), fabric="sn40l")
    assert _decisions(meta.report) == _decisions(cpu.report)
    assert "meta" not in meta.linalg


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_hf_llama_with_its_default_mask_compiles_on_meta(attn: str) -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=100,
    )
    cfg._attn_implementation = attn

    class Logits(nn.Module):
        def __init__(self, m: nn.Module):
            super().__init__()
            self.m = m

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.m(input_ids=ids, use_cache=False).logits

    with torch.device("meta"):
        model = Logits(transformers.LlamaForCausalLM(cfg).eval())
        ids = torch.zeros(1, 16, dtype=torch.int64)
    program = rdu_compiler.compile(model, (ids,), fabric="sn40l")
    assert program.report["totals"]["kernels"] > 0 and program.report["totals"]["estimated_s"] > 0
