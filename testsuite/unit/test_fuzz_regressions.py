"""Minimal programs the random-graph fuzz (testsuite/fuzz) found failing, one test each.

Each docstring names the fuzz seed (`python benchmarks/fuzz.py --seed S --examples 1`
regenerates it with the generator of commit 8fb83c8; later generators draw differently)
and the cause.
"""

from __future__ import annotations

import pytest
import torch

import rdu_compiler
from rdu_compiler.dialects import rdu

CONFIGS = [("sn40l", 0), ("sn40l", 1), ("tiny", 0), ("tiny", 1)]


def _check(model: torch.nn.Module, inputs: tuple, fabric: str, opt_level: int, rtol: float = 1e-5):
    program = rdu_compiler.compile(model, inputs, fabric=fabric, opt_level=opt_level)
    got = program.run(*inputs)
    with torch.no_grad():
        want = model(*inputs)
    assert got.shape == want.shape and got.dtype == want.dtype
    err = (got.double() - want.double()).norm() / want.double().norm().clamp_min(1e-30)
    assert err <= rtol, f"relative L2 error {err:.3e}"
    return program


class _ScalarMax(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(x.sum().reshape(1), 0)


@pytest.mark.parametrize(("fabric", "opt_level"), CONFIGS)
def test_kernel_on_scalars_only_gets_a_pmu(fabric: str, opt_level: int) -> None:
    """Seed 1001: the max of log_softmax over a reshaped 0-d sum. rdu-fold-views folds the
    reshapes into the maps, leaving a reduce whose operands are all rank 0 (register
    scalars, 0 buffer bytes): rdu-allocate gave it 0 PMUs and the cost model crashed
    ("a kernel needs at least one of each"). `buffers.operand_pmus` gives it one."""
    program = _check(_ScalarMax(), (torch.randn(1, 5),), fabric, opt_level)
    kernels = [op for op in program.module.walk() if isinstance(op, rdu.KernelOp)]
    assert kernels and all(k.total_pmus >= 1 for k in kernels)


class _SameBranches(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 7)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        v = self.lin(x)
        return torch.softmax(torch.where(c > -0.3, v, v), dim=-1)


@pytest.mark.parametrize(("fabric", "opt_level"), [("tiny", 1)])
def test_operand_folded_away_because_it_cannot_matter_is_not_refused(fabric: str, opt_level: int) -> None:
    """Fuzz seed 20022 (generator of this session's merge): `torch.where(c, v, v)` is `v`, so
    torch-mlir never reads `c`; the dropped-operand check refused the program although no
    number could be wrong. Now an unread argument is refused only if changing it changes
    an output (eager run of the FX graph)."""
    torch.manual_seed(0)
    _check(_SameBranches().eval(), (torch.randn(2, 5, 3), torch.randn(2, 5, 7)), fabric, opt_level)


class _Scan(torch.nn.Module):
    def __init__(self, prod: bool = False):
        super().__init__()
        self.prod = prod

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumprod(x, -1) if self.prod else torch.cumsum(x, -1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("prod", [False, True])
def test_scan_keeps_the_references_accumulator(dtype: torch.dtype, prod: bool) -> None:
    """Seeds 34031 and 34223 (commit e02eb87): a cumsum over 4,800 values of mixed size
    came back 1.5e-5 and 4.8e-5 (relative L2) from eager. PyTorch's CPU cumsum/cumprod run
    in `acc_type` (float64 for float32, float32 for bfloat16) and round each output once;
    the emulator ran the scan in the element type. It now keeps the reference's accumulator,
    so the results are the same bits."""
    torch.manual_seed(0)
    x = (torch.rand(8, 600) + 0.5) if prod else torch.randn(8, 600) * 1000
    x = x.to(dtype)
    model = _Scan(prod)
    got = rdu_compiler.compile(model, (x,), fabric="sn40l", opt_level=1).run(x)
    with torch.no_grad():
        want = model(x)
    assert got.dtype == want.dtype
    assert torch.equal(got, want), f"{(got != want).float().mean():.1%} of the elements differ"
