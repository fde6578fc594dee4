"""The frontend's single-trace export gives the two-step flow's program (issue 11)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rdu_compiler.frontend.torch.export as export_mod
from rdu_compiler.frontend.errors import FrontendError
from rdu_compiler.frontend.torch.export import import_torch


class _Block(nn.Module):
    """LayerNorm, causal SDPA, GELU MLP: ops with CompositeImplicitAutograd decompositions."""

    def __init__(self, d: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.ln = nn.LayerNorm(d)
        self.qkv, self.o = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.up, self.down = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(self.ln(x)).view(b, s, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, s, d)
        x = x + self.o(a)
        return x + self.down(F.gelu(self.up(x), approximate="tanh"))


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_one_trace_imports_the_same_program_as_two_steps(device: str) -> None:
    torch.manual_seed(0)
    with torch.device(device):
        model = nn.Sequential(_Block(), _Block()).eval()
        x = torch.randn(1, 8, 32)
    one = import_torch(model, (x,), one_trace=True)
    two = import_torch(model, (x,), one_trace=False)
    assert one.mlir_text == two.mlir_text
    assert (one.arg_names, one.arg_kinds, one.input_names, one.num_outputs) == (
        two.arg_names, two.arg_kinds, two.input_names, two.num_outputs)
    assert one.op_nodes == two.op_nodes and any(one.op_nodes)


def test_one_trace_is_taken_for_a_plain_model(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = export_mod._export_then_decompose  # pyright: ignore[reportPrivateUsage]
    monkeypatch.setattr(export_mod, "_export_then_decompose", lambda *a: calls.append("two") or real(*a))
    import_torch(_Block().eval(), (torch.randn(1, 8, 32),))
    assert calls == []


class _Bag(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(10, 4))

    def forward(self, idx: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        out, _, bag_size, _ = torch.ops.aten._embedding_bag(self.w, idx, offsets, False, 0)
        return out + bag_size.unsqueeze(1)


def test_an_embedding_bag_declines_the_single_trace_so_its_check_still_runs() -> None:
    idx, offsets = torch.tensor([1, 2, 4, 5]), torch.tensor([0, 2])
    with pytest.raises(FrontendError, match="offset2bag / bag_size"):
        import_torch(_Bag().eval(), (idx, offsets))
