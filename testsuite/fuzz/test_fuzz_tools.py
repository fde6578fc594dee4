"""The fuzz's own machinery: generated programs are valid, the comparison catches what it must."""

from __future__ import annotations

import pytest
import torch
from fuzz_programs import (
    RandomChooser,
    classify_refusal,
    compare_outputs,
    decided_by_rounding,
    generate,
    ill_conditioned,
    load,
    moved_by_rounding,
    render,
)


def test_generated_programs_run_eagerly_with_the_shapes_recorded() -> None:
    for seed in range(150):
        prog = generate(RandomChooser(seed))
        assert 3 <= sum(1 for o in prog.ops) and prog.outputs
        model, inputs = load(render(prog))
        with torch.no_grad():
            out = model(*inputs)
        outs = out if isinstance(out, tuple) else (out,)
        assert len(outs) == len(prog.outputs)


def test_programs_are_reproducible_from_their_seed() -> None:
    assert render(generate(RandomChooser(7))) == render(generate(RandomChooser(7)))
    assert render(generate(RandomChooser(7))) != render(generate(RandomChooser(8)))


def _prog_without(names: set[str]):
    prog = generate(RandomChooser(0))
    prog.ops = [o for o in prog.ops if o.get("fn") not in names]
    return prog


def test_compare_outputs_catches_each_class() -> None:
    w = torch.randn(4, 5)
    prog = _prog_without({"gelu_tanh"})
    assert compare_outputs(w.clone(), w, prog)[0] == "pass"
    assert compare_outputs(w * (1 + 1e-7), w, prog)[0] == "pass"
    kind, detail, _ = compare_outputs(w * (1 + 1e-4), w, prog)
    assert kind == "wrong" and "relative L2" in detail
    assert "shape" in compare_outputs(w.reshape(5, 4), w, prog)[1]
    assert "dtype" in compare_outputs(w.double(), w, prog)[1]
    nan = w.clone()
    nan[0, 0] = float("nan")
    assert "NaN" in compare_outputs(w, nan, prog)[1]
    inf = w.clone()
    inf[1, 1] = float("inf")
    assert "+inf" in compare_outputs(-inf, inf, prog)[1] or "-inf" in compare_outputs(-inf, inf, prog)[1]
    ids = torch.arange(6)
    assert "integer" in compare_outputs(ids + (ids == 3), ids, prog)[1]
    assert compare_outputs((w, ids), (w, ids), prog)[0] == "pass"
    assert "outputs" in compare_outputs((w,), (w, ids), prog)[1]


def test_known_entries_tolerate_only_their_deviation(monkeypatch: pytest.MonkeyPatch) -> None:
    import fuzz_programs as fp

    prog = _prog_without({"gelu_tanh"})
    s = torch.tensor(3.5)
    assert compare_outputs(s.reshape(1), s, prog)[0] == "wrong"  # no KNOWN entry: a (1,) for () is wrong
    zero_d = fp.Known(
        "zero-d-output", "test entry", applies=lambda prog, g, w: fp._zero_d(g, w),
        adjust=lambda g, w: (g.reshape(()), w),
    )
    monkeypatch.setattr(fp, "KNOWN", [zero_d])
    kind, _, used = compare_outputs(s.reshape(1), s, prog)
    assert kind == "pass" and used == ["zero-d-output"]
    assert compare_outputs(torch.tensor([3.6]), s, prog)[0] == "wrong"  # the value still counts
    assert compare_outputs(torch.tensor([3.5, 3.5]), s, prog)[0] == "wrong"


class _Cancels(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.abs(torch.nn.functional.layer_norm(x, (100,)).sum())) + x[0, :3]


def test_ill_conditioned_excuses_rounding_not_errors() -> None:
    torch.manual_seed(0)
    x = torch.randn(16, 100)
    model = _Cancels()
    with torch.no_grad():
        want = model(x)
        ref = model.double()(x.double()).float()
        model.float()
    assert (want - ref).norm() / ref.norm() > 1e-3  # eager fp32 is itself off here (2.7e-3)
    assert ill_conditioned(model, (x,), want, ref)
    assert not ill_conditioned(model, (x,), want, want + 0.5)  # a real error is not excused
    assert not ill_conditioned(torch.nn.Tanh(), (x,), torch.tanh(x), torch.tanh(x) * (1 + 1e-4))


class _TanhArgmax(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.tanh(x)
        return t, t.argmax(1)


def test_decided_by_rounding_excuses_one_ulp_ties_not_errors() -> None:
    """Seed 20353's finding in small: tanh saturates, two values one ulp apart, argmax."""
    model = _TanhArgmax()
    x = torch.tensor([[10.0, 8.5], [0.5, -0.5], [1.0, 2.0]])
    with torch.no_grad():
        t, idx = model(x)
    assert t[0, 0] != t[0, 1] and (t[0, 0] - t[0, 1]).abs() < 1e-7  # one ulp apart
    flipped = idx.clone()
    flipped[0] = 1 - flipped[0]
    assert decided_by_rounding(model, (x,), (t, idx), (t, flipped))
    wrong = idx.clone()
    wrong[1] = 1 - wrong[1]  # 0.46 against -0.46: no rounding decides that
    assert not decided_by_rounding(model, (x,), (t, idx), (t, wrong))
    assert not decided_by_rounding(model, (x,), (t, idx), (t, idx))  # nothing differs: nothing to excuse
    assert not decided_by_rounding(model, (x,), (t, idx), (t, idx.int()))  # a dtype is never excused


def test_moved_by_rounding_excuses_amplified_roundings_not_errors() -> None:
    """Seed 31239's finding in small: a layer norm over three equal values. Eager's mean
    is exact and so is float64's (both give zeros, so `ill_conditioned` has no yardstick);
    a sequential fp32 sum `(x + x) + x` is one ulp off for these values, and the layer
    norm divides that by sqrt(eps)."""
    model = torch.nn.LayerNorm((3,), elementwise_affine=False).eval()
    x = torch.tensor([0.4900934100151062, 0.455627977848053]).reshape(2, 1).expand(2, 3).contiguous()
    with torch.no_grad():
        want = model(x)
    mean = ((x[:, :1] + x[:, 1:2]) + x[:, 2:]) / 3
    assert bool((mean[:, 0] != x[:, 0]).all())  # the sequential sum is one rounding off
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    got = (x - mean) * torch.rsqrt(var + 1e-5)
    assert compare_outputs(got, want)[0] == "wrong"  # by the plain rule, 2.3e-5 > 1e-5
    assert ill_conditioned(model, (x,), want, got) is False  # float64 agrees with eager exactly
    assert moved_by_rounding(model, (x,), want, got)
    assert not moved_by_rounding(model, (x,), want, got * 50)  # 50x the rounding spread is an error
    y = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    tanh = torch.nn.Tanh()
    # a well-conditioned op: a 2e-5 relative error is never a rounding effect
    assert not moved_by_rounding(tanh, (y,), torch.tanh(y), torch.tanh(y) * (1 + 2e-5))
    assert not moved_by_rounding(model, (x,), want, got.double())  # a dtype is never excused


def test_refusals_of_one_kind_share_a_class() -> None:
    a = classify_refusal(
        "rdu-tile{fabric=tiny max_buffer_pmus=8}: kernel 'k12_scan': operand 0 needs 27648 B per "
        "tile even at the smallest tile, over the 16384 B a buffer may hold; use a fabric\nReproduce with: x"
    )
    b = classify_refusal(
        "rdu-tile{fabric=tiny}: kernel 'k3_scan': operand 1 needs 9000 B per tile even at the "
        "smallest tile, over the 8192 B a buffer may hold; use a fabric with larger PMUs"
    )
    assert a == b and a.startswith("rdu-tile: kernel")
    c = classify_refusal("aten.foo at /tmp/m.py:12 on tensor<2x3xf32> is not supported. Rewrite it.")
    assert c == classify_refusal("aten.foo at model.py:7 on tensor<5xi64> is not supported. Do X.")
