"""The fused-kernel benchmark API, rdu-bench, bf16 numerics and shape-only compiles."""

from __future__ import annotations

import json

import pytest
import torch

import rdu_compiler
from rdu_compiler import bench
from rdu_compiler.bench.models import LayerShape, gpt2_model, llama_layer, llama_model
from rdu_compiler.errors import RduError
from rdu_compiler.tools import rdu_bench

SMALL = LayerShape(hidden=128, heads=4, kv_heads=2, mlp=256, seq=16)
SMALL_DECODE = LayerShape(hidden=128, heads=4, kv_heads=2, mlp=256, seq=1, past=16)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a.float() - b.float()) / torch.linalg.norm(b.float()))


@pytest.mark.parametrize("shape", [SMALL, SMALL_DECODE], ids=["prefill", "decode"])
@pytest.mark.parametrize("fabric", ["sn40l", "tiny"])
def test_bf16_layer_matches_torch_bf16(shape: LayerShape, fabric: str) -> None:
    model, inputs = llama_layer(shape, dtype=torch.bfloat16, device="cpu")
    with torch.no_grad():
        expected = model(*inputs)
    got = rdu_compiler.compile(model, inputs, fabric=fabric).run(*inputs)
    assert got.dtype == torch.bfloat16
    # bf16 has an 8-bit mantissa (eps 2^-8 ~ 3.9e-3); torch's own bf16 result is ~2.6e-3
    # from fp32 here. The emulator must be as close to torch bf16 as bf16 allows.
    assert _rel(got, expected) <= 1e-2


def test_bf16_tensors_cost_two_bytes() -> None:
    m16, in16 = llama_layer(SMALL, dtype=torch.bfloat16)
    m32, in32 = llama_layer(SMALL, dtype=torch.float32)
    r16 = rdu_compiler.compile(m16, in16).report
    r32 = rdu_compiler.compile(m32, in32).report
    weights16 = r16["roofline"]["compulsory_bytes"]
    weights32 = r32["roofline"]["compulsory_bytes"]
    assert weights16 * 2 == weights32  # every argument and result is half the bytes


def test_compare_on_meta_tensors() -> None:
    model, inputs = llama_layer(LayerShape(hidden=256, heads=4, kv_heads=4, mlp=512, seq=64))
    assert all(p.is_meta for p in model.parameters())
    result = bench.compare(model, inputs, fabric="sn40l", name="layer", run_emulator=True)
    o0, o1 = result.levels
    assert o0.sections == o0.kernels  # -O0: one kernel per section
    assert o1.sections < o0.sections and o1.kernels <= o0.kernels
    assert result.speedup > 1.0 and result.launch_ratio > 1.0
    assert o1.hbm_bytes < o0.hbm_bytes  # intermediates stay on chip
    assert 0.0 < o1.roofline_fraction <= 1.0 and 0.0 < o1.pcu_utilization <= 1.0
    assert o0.emulator_s is None  # meta weights: nothing to run
    json.dumps(result.to_dict())


def test_compare_runs_the_emulator_with_real_weights() -> None:
    model, inputs = llama_layer(SMALL, dtype=torch.float32, device="cpu")
    result = bench.compare(model, inputs, fabric="tiny", run_emulator=True)
    assert all(lv.emulator_s is not None and lv.emulator_s > 0 for lv in result.levels)


def test_whole_model_builders_compile_from_shapes() -> None:
    model, inputs = llama_model(SMALL_DECODE, layers=2, vocab=1000)
    report = rdu_compiler.compile(model, inputs).report
    # the embedding table is only gathered from: compulsory bytes count one row, not 1000
    table = 1000 * SMALL_DECODE.hidden * 2
    assert report["roofline"]["compulsory_bytes"] < sum(p.numel() * 2 for p in model.parameters()) - table + 1e6
    model, inputs = gpt2_model(LayerShape(hidden=64, heads=4, kv_heads=4, mlp=256, seq=1, past=8), layers=2, vocab=100)
    assert rdu_compiler.compile(model, inputs).report["totals"]["sections"] >= 1


def test_rdu_bench_cli(tmp_path) -> None:
    out = tmp_path / "bench.json"
    rdu_bench.main(["examples/mlp.py", "--fabric", "tiny", "--run", "--json", str(out)])
    data = json.loads(out.read_text())
    assert [lv["opt_level"] for lv in data["levels"]] == [0, 1]
    assert data["launch_ratio"] >= 1.0


def test_rdu_bench_needs_a_model(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        rdu_bench.main([])
    assert e.value.code == 2
    assert "model.py or --builtin" in capsys.readouterr().err


def test_rdu_bench_builtin_8b_decode_on_16_sockets(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`rdu-bench --builtin llama3.1-8b-decode --sockets 16 --tp 16`: the HF Llama-3.1-8B
    decode program (built here with 4 of its 32 layers and a 64-token context, to keep the
    test short) on the default fabric "sn40l" compiles for the 16-socket rack preset."""
    from rdu_compiler.bench import models

    small = lambda: models.hf_llama31_8b_decode(64, layers=4)  # noqa: E731
    monkeypatch.setattr(rdu_bench, "_builtins", lambda: {"llama3.1-8b-decode": small})
    out = tmp_path / "bench.json"
    rdu_bench.main(["--builtin", "llama3.1-8b-decode", "--sockets", "16", "--tp", "16", "--kernel-looping",
                    "-O", "1", "--json", str(out)])
    data = json.loads(out.read_text())
    assert data["fabric"] == "sn40l-rack16" and [lv["opt_level"] for lv in data["levels"]] == [1]
    assert data["speedup"] is None and data["levels"][0]["kernel_loops"] == 1


def test_the_builtin_list_has_the_whole_8b_decode_model() -> None:
    assert {"llama3.1-8b-decode", "llama3.1-8b-decode-layer"} <= set(rdu_bench._builtins())


def test_node_preset_resolves_one_socket_presets_only() -> None:
    from rdu_compiler.fabric import node_preset

    assert node_preset("sn40l", 16) == "sn40l-rack16" and node_preset("sn40l", 4) == "sn40l-node8"
    assert node_preset("sn40l", 1) == "sn40l" and node_preset("sn40l-node8", 16) == "sn40l-node8"  # refused later
    assert node_preset("sn40l", 32) == "sn40l"  # no preset holds 32: the socket check refuses with its message
    assert node_preset("sn40l", 3) == "sn40l-node8"  # the smallest preset holding 3
    from rdu_compiler.fabric import node_fabric

    with pytest.raises(RduError, match="at least 1 socket"):
        node_fabric("sn40l", 1, 0)
    with pytest.raises(RduError, match=r"zipf \(a finite exponent > 0\)"):
        rdu_compiler.compile(torch.nn.Linear(8, 8), (torch.randn(2, 8),), tier_rows={"hbm_bytes": 1, "zipf": float("nan")})
    with pytest.raises(RduError, match="sn40l-rack16"):
        rdu_compiler.compile(torch.nn.Linear(8, 8), (torch.randn(2, 8),), fabric="sn40l", tp=32)
