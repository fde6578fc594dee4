"""End to end: the example models compiled for sn40l and tiny at -O0 and -O1, run on the
emulator and compared with eager PyTorch (fp32, relative L2 error <= 1e-5). The HF models
come from transformers 5.23.0 and the references from torch 2.13.0 (requirements.lock).

Each model is loaded once and each (model, fabric, -O) program compiled and run once per
process (`testsuite/example_programs.py`, shared with test_golden.py); the structural tests reuse those programs. Besides the
numerics the tests check what the report promises: the static traffic count equals the
bytes the emulator measured, tiny sections and spills to DDR, sn40l -O1 packs a small
model into one section, -O0 is one kernel per section, and fusion never adds kernels.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import rdu_compiler
from rdu_compiler.errors import EmulatorError, RduError
from rdu_compiler.fabric import load_fabric
from rdu_compiler.runtime.emulator import Emulator
from testsuite.example_programs import compiled, loaded

MODELS = ["mlp", "cnn", "gpt2_2layer", "llama_2layer", "bert_2layer"]
TRANSFORMERS = ["gpt2_2layer", "llama_2layer", "bert_2layer"]
FABRICS = ["sn40l", "tiny"]
LEVELS = [0, 1]
TOLERANCE = 1e-5


def rel_l2(got: torch.Tensor, want: torch.Tensor) -> float:
    got64, want64 = got.detach().double(), want.detach().double()
    return float((got64 - want64).norm() / want64.norm().clamp_min(1e-30))


ALL = [(n, f, o) for n in MODELS for f in FABRICS for o in LEVELS]


def _id(case: tuple[str, str, int]) -> str:
    return f"{case[0]}-{case[1]}-O{case[2]}"


@pytest.mark.parametrize("case", ALL, ids=[_id(c) for c in ALL])
def test_numerics_match_pytorch(case: tuple[str, str, int]) -> None:
    name, fabric, level = case
    want = loaded(name).reference
    got = compiled(name, fabric, level).output
    assert isinstance(got, torch.Tensor)
    assert got.shape == want.shape
    assert got.dtype == torch.float32
    assert torch.isfinite(got).all()
    err = rel_l2(got, want)
    assert err <= TOLERANCE, f"{_id(case)}: relative L2 error {err:.3e} > {TOLERANCE:.0e}"


@pytest.mark.parametrize("case", ALL, ids=[_id(c) for c in ALL])
def test_static_traffic_equals_emulator_bytes(case: tuple[str, str, int]) -> None:
    report = compiled(*case).program.report
    totals, measured = report["totals"], report["emulator"]
    assert totals["hbm_bytes"] == measured["hbm_bytes"]
    assert totals["ddr_bytes"] == measured["ddr_bytes"]
    assert totals["hbm_bytes"] + totals["ddr_bytes"] > 0
    per_section_static = [(s["name"], s["hbm_bytes"], s["ddr_bytes"]) for s in report["sections"]]
    per_section_measured = [(s["name"], s["hbm_bytes"], s["ddr_bytes"]) for s in measured["sections"]]
    assert per_section_static == per_section_measured
    assert measured["tiles"] >= totals["kernels"]


@pytest.mark.parametrize("level", LEVELS, ids=["O0", "O1"])
@pytest.mark.parametrize("name", TRANSFORMERS)
def test_tiny_sections_and_spills_to_ddr(name: str, level: int) -> None:
    report = compiled(name, "tiny", level).program.report
    totals = report["totals"]
    assert totals["sections"] > 1
    assert totals["ddr_peak_bytes"] > 0
    assert totals["ddr_bytes"] > 0
    assert report["emulator"]["ddr_bytes"] > 0
    # HBM is 64 KiB on tiny: the live footprint there never exceeds it.
    assert 0 < totals["hbm_peak_bytes"] <= load_fabric("tiny").hbm.capacity_bytes


@pytest.mark.parametrize("name", MODELS)
def test_sn40l_O1_is_one_section_without_spills(name: str) -> None:
    totals = compiled(name, "sn40l", 1).program.report["totals"]
    assert totals["sections"] == 1
    assert totals["ddr_bytes"] == 0
    assert totals["ddr_peak_bytes"] == 0


@pytest.mark.parametrize("fabric", FABRICS)
@pytest.mark.parametrize("name", MODELS)
def test_O0_is_one_kernel_per_section(name: str, fabric: str) -> None:
    report = compiled(name, fabric, 0).program.report
    assert report["totals"]["sections"] == report["totals"]["kernels"]
    assert all(len(s["kernels"]) == 1 for s in report["sections"])


@pytest.mark.parametrize("fabric", FABRICS)
@pytest.mark.parametrize("name", MODELS)
def test_O1_fuses_and_packs(name: str, fabric: str) -> None:
    o0 = compiled(name, fabric, 0)
    o1 = compiled(name, fabric, 1)
    t0, t1 = o0.program.report["totals"], o1.program.report["totals"]
    assert t1["kernels"] <= t0["kernels"]
    assert t1["sections"] < t0["sections"]
    # Fewer sections and fused intermediates: less off-chip traffic, no slower estimate.
    assert t1["hbm_bytes"] + t1["ddr_bytes"] < t0["hbm_bytes"] + t0["ddr_bytes"]
    assert t1["estimated_s"] < t0["estimated_s"]
    torch.testing.assert_close(o1.output, o0.output, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_O1_fuses_transformer_kernels(name: str) -> None:
    assert compiled(name, "sn40l", 1).program.report["totals"]["kernels"] < compiled(name, "sn40l", 0).program.report["totals"]["kernels"]


@pytest.mark.parametrize("name", MODELS)
def test_report_is_consistent(name: str) -> None:
    report = compiled(name, "tiny", 1).program.report
    totals = report["totals"]
    assert sum(totals["kernel_kinds"].values()) == totals["kernels"]
    assert sum(len(s["kernels"]) for s in report["sections"]) == totals["kernels"]
    assert totals["flops"] > 0
    assert totals["estimated_s"] > 0
    assert report["roofline"]
    fabric = load_fabric("tiny")
    for s in report["sections"]:
        assert s["pcus"] <= fabric.num_pcus
        assert s["pmus"] <= fabric.num_pmus


def test_program_runs_on_new_inputs() -> None:
    """The program is not specialised to the example inputs it was compiled with."""
    m = loaded("mlp")
    program = compiled("mlp", "tiny", 1).program
    x = torch.randn_like(m.inputs[0])
    with torch.no_grad():
        want = m.model(x)
    assert rel_l2(program.run(x), want) <= TOLERANCE


def test_llama_fold_constants() -> None:
    """fold_constants evaluates the RoPE tables and the causal mask at import: fewer kernels,
    no cumsum scan left, same numerics, also on token ids other than the example's."""
    m = loaded("llama_2layer")
    program = rdu_compiler.compile(m.model, m.inputs, fabric="sn40l", opt_level=1, fold_constants=True)
    unfolded = compiled("llama_2layer", "sn40l", 1).program.report["totals"]
    totals = program.report["totals"]
    assert totals["kernels"] < unfolded["kernels"]
    assert "scan" not in totals["kernel_kinds"]
    assert rel_l2(program.run(*m.inputs), m.reference) <= TOLERANCE
    assert program.report["totals"]["hbm_bytes"] == program.report["emulator"]["hbm_bytes"]
    ids = torch.randint(0, 512, m.inputs[0].shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = m.model(ids)
    assert rel_l2(program.run(ids), want) <= TOLERANCE


def test_emulator_refuses_program_for_a_larger_fabric() -> None:
    program = compiled("gpt2_2layer", "sn40l", 1).program
    (section,) = program.report["sections"]
    assert section["pcus"] > load_fabric("tiny").num_pcus  # one section, more PCUs than tiny has
    with pytest.raises(EmulatorError, match=r"section 's0'.*fabric 'tiny'"):
        Emulator(program.module, load_fabric("tiny"))


def test_wrong_number_of_inputs_is_an_error() -> None:
    program = compiled("mlp", "sn40l", 1).program
    x = loaded("mlp").inputs[0]
    with pytest.raises(RduError, match="input tensor"):
        program.run(x, x)


def test_saved_program(tmp_path: Path) -> None:
    program = compiled("cnn", "tiny", 1).program
    program.save(str(tmp_path / "out"))
    text = (tmp_path / "out" / "model.mlir").read_text()
    assert "rdu.section" in text
    assert text == program.ir
    assert (tmp_path / "out" / "weights.safetensors").stat().st_size > 0
    assert (tmp_path / "out" / "report.json").exists()
