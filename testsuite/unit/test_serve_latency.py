"""Latency from compiled programs: regions, the disk cache, the DistServe fits against fresh
compiles, and a request alone through the loop on the compiled model (tiny model, 8x8 fabric)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rdu_compiler.fabric import load_fabric
from rdu_compiler.serve import Request, simulate
from rdu_compiler.serve.latency import build_latency_model, decode_features, prefill_features
from rdu_compiler.serve.programs import MODELS, measure
from rdu_compiler.serve.regions import ShareError, region

PRESET = Path(__file__).resolve().parents[2] / "rdu_compiler" / "fabric" / "presets" / "tiny.toml"
POINTS = {
    "prefill_points": (8, 32, 64), "prefill_check": (16,),
    "decode_points": ((1, 16), (4, 32), (8, 64)), "decode_check": ((2, 32),),
    "head_points": (1, 8), "head_check": (),
    "mixed_points": ((24, 0, 8, 16), (8, 16, 4, 32), (48, 8, 16, 64), (16, 32, 2, 8)), "mixed_check": ((12, 8, 6, 24),),
}


def small_fabric(directory: Path) -> str:
    """tiny.toml on an 8x8 grid with 4 AGCUs and 64 MiB of HBM (room for weights and KV)."""
    text = PRESET.read_text()
    for old, new in (("rows = 4", "rows = 8"), ("cols = 4", "cols = 8"), ("count = 2\n", "count = 4\n"),
                     ("capacity_bytes = 65536", "capacity_bytes = 67108864"), ('name = "tiny"', 'name = "small8"')):
        assert old in text
        text = text.replace(old, new, 1)
    path = directory / "small8.toml"
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    fabric = small_fabric(d)
    t0 = time.perf_counter()
    lm = build_latency_model("tiny", fabric, [0.5], cache_dir=str(d / "cache"), **POINTS)
    return lm, fabric, d, time.perf_counter() - t0


def test_region_is_a_share_of_the_grid(tmp_path) -> None:
    fabric = small_fabric(tmp_path)
    reg = region(fabric, 0.5, tmp_path / "r")
    f = load_fabric(reg.path)
    base = load_fabric(fabric)
    assert (f.rows, f.cols, f.agcu.count) == (4, 8, 2)
    assert f.num_pcus == base.num_pcus // 2
    assert (f.hbm, f.ddr) == (base.hbm, base.ddr)  # shared, not divided
    with pytest.raises(ShareError):
        region(fabric, 0.0, tmp_path / "r")


def test_fit_error_is_measured_on_fresh_compiles(built) -> None:
    lm, fabric, d, _ = built
    assert sorted(lm.shares) == [4, 8]
    for rows in (4, 8):
        reg = region(fabric, rows / 8, d / "fresh")
        [pre] = measure(MODELS["tiny"], [reg], "prefill", (16,), d / "fresh-cache")
        [dec] = measure(MODELS["tiny"], [reg], "decode", (2, 32), d / "fresh-cache")
        assert not pre["cached"] and not dec["cached"]
        s = lm.shares[rows]
        fit_p = sum(a * b for a, b in zip(s.prefill_s, prefill_features([(16, 0)]), strict=True))
        fit_d = sum(a * b for a, b in zip(s.decode_s, decode_features([32, 32]), strict=True))
        assert lm.fit_error[rows]["prefill"] == pytest.approx(abs(fit_p - pre["estimated_s"]) / pre["estimated_s"])
        assert lm.fit_error[rows]["decode"] == pytest.approx(abs(fit_d - dec["estimated_s"]) / dec["estimated_s"])
        assert lm.fit_error[rows]["prefill"] < 0.5 and lm.fit_error[rows]["decode"] < 0.5


def test_more_share_is_not_slower_for_prefill(built) -> None:
    lm = built[0]
    assert lm.prefill(4, [(64, 0)])[0] > lm.prefill(8, [(64, 0)])[0]


def test_second_build_reads_the_cache(built) -> None:
    lm, fabric, d, first = built
    t0 = time.perf_counter()
    again = build_latency_model("tiny", fabric, [0.5], cache_dir=str(d / "cache"), **POINTS)
    assert again.shares == lm.shares
    assert time.perf_counter() - t0 < max(2.0, first / 5)


def test_request_alone_on_the_compiled_model(built) -> None:
    lm = built[0]
    res = simulate([Request(0.5, 40, 3)], lm, "static:0.5")
    expect = lm.prefill(4, [(40, 0)])[0] + lm.decode(4, [41])[0] + lm.decode(4, [42])[0]
    assert res.records[0].finish == pytest.approx(0.5 + expect, rel=1e-12)


def test_mixed_program_is_one_prefill_chunk_and_decode_tokens() -> None:
    """The mixed-batch layer computes what the prefill layer and the decode layer compute
    separately with the same weights (eager, random weights, CPU)."""
    import torch

    from rdu_compiler.bench.models import LlamaLayer
    from rdu_compiler.serve.programs import MixedLayer

    m = MODELS["tiny"]
    torch.manual_seed(0)
    n, past, b, ctx, d = 5, 3, 2, 4, m.head_dim
    mix = MixedLayer(m, n, past, b, ctx).eval()
    for p in mix.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x, cos, sin = torch.randn(1, n + b, m.hidden), torch.randn(n + b, d), torch.randn(n + b, d)
    pk, pv = torch.randn(1, m.kv_heads, past, d), torch.randn(1, m.kv_heads, past, d)
    dk, dv = torch.randn(b, m.kv_heads, ctx, d), torch.randn(b, m.kv_heads, ctx, d)
    y = mix(x, cos, sin, pk, pv, dk, dv)
    pre = LlamaLayer(m.layer_shape(n, past)).eval()
    pre.load_state_dict(mix.state_dict())
    torch.testing.assert_close(y[:, :n], pre(x[:, :n], cos[:n], sin[:n], pk, pv))
    dec = LlamaLayer(m.layer_shape(1, ctx)).eval()
    dec.load_state_dict(mix.state_dict())
    for i in range(b):
        j = n + i
        torch.testing.assert_close(y[:, j:j + 1], dec(x[:, j:j + 1], cos[j:j + 1], sin[j:j + 1], dk[i:i + 1], dv[i:i + 1]))


def test_mixed_fit_and_composed_error_against_fresh_compiles(built) -> None:
    from rdu_compiler.serve.latency import composed_layer, mixed_features

    lm, fabric, d, _ = built
    reg = region(fabric, 1.0, d / "fresh")
    [mix] = measure(MODELS["tiny"], [reg], "mixed", (12, 8, 6, 24), d / "fresh-cache")
    assert not mix["cached"]
    s = lm.shares[8]
    assert s.mixed_s is not None and lm.shares[4].mixed_s is None  # whole grid only
    fit = sum(a * b for a, b in zip(s.mixed_s, mixed_features([(12, 8)], [24] * 6), strict=True))
    assert lm.fit_error[8]["mixed"] == pytest.approx(abs(fit - mix["estimated_s"]) / mix["estimated_s"])
    composed = composed_layer(s, [(12, 8)], [24] * 6)[0]
    assert lm.fit_error[8]["mixed_composed"] >= abs(composed - mix["estimated_s"]) / mix["estimated_s"]
    # the chunked policy's step uses the compiled mixed fit on the whole grid, the composed one elsewhere
    heads = lm.model.layers * fit + sum(a * b for a, b in zip(s.head_s, [1.0, 7.0], strict=True))
    assert lm.mixed(8, [(12, 8)], [24] * 6)[0] == pytest.approx(heads, rel=1e-12)
    assert lm.mixed(4, [(12, 8)], [24] * 6) == lm.composed(4, [(12, 8)], [24] * 6)
