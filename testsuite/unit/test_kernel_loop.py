"""Kernel looping (`rdu-kernel-loop`, `cost.kloop`, `runtime.kloop`): the repeated layers of
a placed program found and recorded, the looped call's cost, the emulator running
iterations >= 1 with the body's programs (results equal the unlooped program's), tp = 2,
and the refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, DenseArrayBase, i64

from rdu_compiler.api import compile_imported, import_model
from rdu_compiler.bench.models import LayerShape, llama_model
from rdu_compiler.cost.analysis import build_report
from rdu_compiler.cost.kloop import apply_kernel_loops
from rdu_compiler.errors import EmulatorError, RduError
from rdu_compiler.fabric import load_fabric
from rdu_compiler.frontend.torch.model_file import load_model_file
from rdu_compiler.passes.rdu_kernel_loop import LOOPS_ATTR, find_loops, loops_of
from rdu_compiler.runtime.emulator import Emulator
from testsuite.example_programs import loaded, program

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SMALL = LayerShape(hidden=64, heads=4, kv_heads=2, mlp=128, seq=4, past=0)


def _example(name: str) -> tuple[torch.nn.Module, tuple[Any, ...]]:
    return load_model_file(EXAMPLES / f"{name}.py")


def _fn(program: Any) -> func.FuncOp:
    return next(op for op in program.module.ops if isinstance(op, func.FuncOp))


@pytest.fixture(scope="module")
def llama_o0() -> dict[str, Any]:  # 2 layers: the examples below
    layers = 4
    net, inputs = llama_model(SMALL, layers, 128, dtype=torch.float32, device="cpu")
    imported = import_model(net, inputs)
    return {"layers": layers, "inputs": inputs,
            "plain": compile_imported(imported, "sn40l", 0),
            "looped": compile_imported(imported, "sn40l", 0, kernel_looping=True)}


def test_detects_one_loop_over_the_layers(llama_o0: dict[str, Any]) -> None:
    layers, looped, plain = llama_o0["layers"], llama_o0["looped"], llama_o0["plain"]
    kl = looped.report["kernel_loops"]
    assert kl["count"] == 1
    loop = kl["loops"][0]
    assert loop["trips"] == layers  # one iteration per decoder layer
    k = loop["sections_per_iteration"]
    sections = plain.report["totals"]["sections"]
    assert k * layers < sections  # the embedding, final norm and LM head are outside the loop
    assert kl["launches_saved"] == (layers - 1) * k
    assert kl["section_launches"] == sections - (layers - 1) * k
    assert loop["carried_values"] >= 1 and loop["per_iteration_inputs"] >= 1  # the residual stream; the weights
    # the looped call: one launch per body section, so (layers - 1) k launches less, and no fill beyond the body's
    fab = load_fabric("sn40l")
    saved = plain.report["totals"]["estimated_s"] - looped.report["totals"]["estimated_s"]
    assert saved == pytest.approx(kl["saved_s"])
    assert kl["loops"][0]["launch_saved_s"] == pytest.approx((layers - 1) * k * fab.launch_overhead_s)
    assert saved == pytest.approx(kl["loops"][0]["launch_saved_s"] + kl["loops"][0]["fill_saved_s"])
    assert looped.report["totals"]["launch_s"] == pytest.approx(kl["section_launches"] * fab.launch_overhead_s)


def test_looped_emulator_equals_unlooped_and_holds_the_body_once(llama_o0: dict[str, Any]) -> None:
    inputs, looped, plain = llama_o0["inputs"], llama_o0["looped"], llama_o0["plain"]
    a, b = plain.run(*inputs).numpy(), looped.run(*inputs).numpy()
    assert np.array_equal(a, b)
    fab = load_fabric("sn40l")
    em_plain, em_looped = Emulator(plain.module, fab), Emulator(looped.module, fab)
    kl = looped.report["kernel_loops"]
    assert len(em_plain.executors) - len(em_looped.executors) == kl["launches_saved"]  # -O0: one kernel per section


def test_cost_formula_and_switch_sweep(llama_o0: dict[str, Any]) -> None:
    prog = llama_o0["looped"]
    fab = load_fabric("sn40l")
    full = fab.launch_overhead_s
    base = llama_o0["plain"].report
    reports = {}
    for r in (0.0, fab.argument_load_s, full):
        rep = build_report(prog.module, fab, 0)
        apply_kernel_loops(rep, prog.module, fab, section_switch_s=r)
        reports[r] = rep
    kl0 = reports[0.0]["kernel_loops"]
    k, trips = kl0["loops"][0]["sections_per_iteration"], kl0["loops"][0]["trips"]
    assert k > 1
    fills = kl0["loops"][0]["fill_saved_s"]
    for r, rep in reports.items():  # saved = (N - 1) k (P + A - R) + the fills of iterations >= 1
        assert rep["kernel_loops"]["saved_s"] == pytest.approx((trips - 1) * k * (full - r) + fills)
        assert base["totals"]["estimated_s"] - rep["totals"]["estimated_s"] == pytest.approx(rep["kernel_loops"]["saved_s"])
    looped = [s for s in reports[0.0]["sections"] if s["cost"].get("looped")]
    assert len(looped) == (trips - 1) * k
    assert all(s["cost"]["launch_s"] == 0 and s["cost"]["fill_s"] == 0 for s in looped)
    assert reports[0.0]["totals"]["estimated_s"] == pytest.approx(prog.report["totals"]["estimated_s"])  # build_report's own
    again = build_report(prog.module, fab, 0)  # applied twice: the same as once
    apply_kernel_loops(again, prog.module, fab)
    assert again["totals"]["estimated_s"] == pytest.approx(prog.report["totals"]["estimated_s"])


@pytest.mark.parametrize("name", ["gpt2_2layer", "llama_2layer"])
def test_examples_looped_equal_unlooped(name: str) -> None:
    m = loaded(name)
    net, inputs = m.model, m.inputs
    plain = program(name, "sn40l", 0)  # the models suite's program, when it ran in this process
    looped = compile_imported(import_model(net, inputs), "sn40l", 0, kernel_looping=True)
    kl = looped.report["kernel_loops"]
    assert kl["count"] == 1 and kl["loops"][0]["trips"] == 2  # the two decoder layers
    k = kl["loops"][0]["sections_per_iteration"]
    assert kl["launches_saved"] == k and kl["section_launches"] == plain.report["totals"]["sections"] - k
    assert np.array_equal(plain.run(*inputs).numpy(), looped.run(*inputs).numpy())
    ref = m.reference.numpy()  # eager, computed once by `loaded`
    out = looped.run(*inputs).numpy()
    assert np.linalg.norm(out - ref) / np.linalg.norm(ref) <= 1e-5


def test_tp2_with_kernel_looping() -> None:
    net, inputs = llama_model(SMALL, 4, 128, dtype=torch.float32, device="cpu")
    imported = import_model(net, inputs)
    plain = compile_imported(imported, "sn40l-node8", 1, tp=2)
    looped = compile_imported(imported, "sn40l-node8", 1, tp=2, kernel_looping=True)
    kl = looped.report["kernel_loops"]
    assert kl["count"] >= 1 and kl["launches_saved"] >= 2
    loop = kl["loops"][0]
    assert loop["trips"] >= 2 and loop["ops_per_iteration"] > loop["sections_per_iteration"]  # the all-reduces are in it
    t, tp_plain = looped.report["totals"], plain.report["totals"]
    assert t["estimated_s"] == pytest.approx(t["socket_sections_s"] + t["collectives_s"] + t["sync_s"])
    assert t["collectives_s"] == pytest.approx(tp_plain["collectives_s"])  # looping saves launches, not collectives
    assert tp_plain["estimated_s"] - t["estimated_s"] == pytest.approx(kl["saved_s"])
    assert looped.report["sockets"][0]["launch_s"] == pytest.approx(t["launch_s"])
    assert np.array_equal(plain.run(*inputs).numpy(), looped.run(*inputs).numpy())


def test_no_repeated_layer_reports_zero_loops() -> None:
    net, inputs = llama_model(SMALL, 1, 128, dtype=torch.float32, device="cpu")
    prog = compile_imported(import_model(net, inputs), "sn40l", 1, kernel_looping=True)
    kl = prog.report["kernel_loops"]
    assert kl["count"] == 0 and kl["launches_saved"] == 0 and kl["saved_s"] == 0
    assert kl["note"].startswith("0 loops")
    assert loops_of(_fn(prog)) == []


def test_refuses_kernel_looping_with_pp() -> None:
    net, inputs = _example("gpt2_2layer")
    with pytest.raises(RduError, match="kernel looping with pp = 2"):
        compile_imported(import_model(net, inputs), "sn40l-node8", 1, pp=2, kernel_looping=True)


def test_stale_loop_annotation_is_refused(llama_o0: dict[str, Any]) -> None:
    looped = llama_o0["looped"]
    fn = _fn(looped)
    (loop,) = find_loops(fn)
    old = fn.attributes[LOOPS_ATTR]
    try:  # claim one op more per iteration: iteration 1 is then not iteration 0's program
        fn.attributes[LOOPS_ATTR] = ArrayAttr([DenseArrayBase.from_list(i64, [loop.start, loop.period + 1, 2, 1])])
        with pytest.raises(RduError, match="changed after rdu-kernel-loop"):
            loops_of(fn)
        with pytest.raises(EmulatorError, match="changed after rdu-kernel-loop"):
            Emulator(looped.module, load_fabric("sn40l"))
    finally:
        fn.attributes[LOOPS_ATTR] = old


def test_cli_kernel_looping(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rdu_compiler.tools.rdu_compile import main

    main([str(EXAMPLES / "gpt2_2layer.py"), "-O", "0", "--kernel-looping", "--no-run", "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "kernel loops: 1, launches saved" in out
