"""Pipeline parallelism (issue 13): where rdu-pipeline cuts (`plan.stages`), the channel
check on direct calls, the stage programs on the emulator against the unstaged program,
and the pipeline's cost with micro-batches."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from xdsl.dialects import func

from rdu_compiler.dialects import rdu
from rdu_compiler.errors import EmulatorError, RduError
from rdu_compiler.plan.stages import plan_stages

# three "layers" of four kernels: 10 bytes cross a layer boundary, 100 a cut inside a layer
LAYERS = [0] + [10 if c % 4 == 0 else 100 for c in range(1, 12)]


def test_cuts_balance_first_then_go_where_fewest_bytes_cross() -> None:
    plan = plan_stages([1.0] * 12, LAYERS, 3)
    assert plan.starts == (0, 4, 8) and plan.crossing_bytes == (10, 10)
    heavy_head = plan_stages([1.0] * 12 + [2.0], [*LAYERS, 10], 3)  # an LM head on the last stage
    assert heavy_head.starts == (0, 4, 8) and heavy_head.stage_work == (4.0, 4.0, 6.0)  # within 25% of W* = 5
    strict = plan_stages([1.0] * 12 + [2.0], [*LAYERS, 10], 3, imbalance=0.0)  # balance only: a cut inside a layer
    assert max(strict.stage_work) == pytest.approx(5.0) and 100 in strict.crossing_bytes
    lopsided = plan_stages([1.0, 1.0, 1.0, 9.0], [0, 1, 1, 1], 2)
    assert lopsided.starts == (0, 3) and lopsided.best_max_work == pytest.approx(9.0)


def test_too_many_stages_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot cut 2 kernels into 3 stages"):
        plan_stages([1.0, 1.0], [0, 0], 3)


def test_channel_check_is_an_rdu_error_naming_the_channel() -> None:
    from rdu_compiler.dialects import rdu
    from rdu_compiler.ir import parse_module

    text = """
    func.func @s0(%x: tensor<4xf32>) attributes {rdu.stage = 0 : i64} {
      rdu.send %x to 1 channel 5 : tensor<4xf32>
      func.return
    }
    func.func @s1() attributes {rdu.stage = 1 : i64} {
      func.return
    }"""
    module = parse_module(text)
    with pytest.raises(RduError, match="channel 5 has 1 rdu.send and 0 rdu.recv"):
        rdu.verify_channels(module)


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@functools.cache
def _programs(name: str) -> tuple[Any, Any, Any]:
    """(unstaged, pp=2 with 4 micro-batches) programs of an example model, and its inputs."""
    import rdu_compiler
    from rdu_compiler.frontend.torch.model_file import load_model_file

    model, inputs = load_model_file(str(EXAMPLES / f"{name}.py"))
    imported = rdu_compiler.import_model(model, inputs)
    one = rdu_compiler.compile_imported(imported, fabric="sn40l-node8")
    staged = rdu_compiler.compile_imported(imported, fabric="sn40l-node8", pp=2, microbatches=4)
    return one, staged, inputs


def _rel_l2(got: Any, want: Any) -> float:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


@pytest.mark.parametrize("name", ["gpt2_2layer", "llama_2layer"])
def test_two_stages_equal_the_unstaged_program(name: str) -> None:
    one, staged, inputs = _programs(name)
    fns = [op for op in staged.module.ops if isinstance(op, func.FuncOp)]
    assert [f.attributes[rdu.STAGE_ATTR].value.data for f in fns] == [0, 1]  # type: ignore[attr-defined]
    sends = [op for f in fns for op in f.body.block.ops if isinstance(op, rdu.SendOp)]
    assert sends and all(op.peer.value.data == 1 for op in sends)
    want = one.run(*inputs)
    got = staged.run(*inputs)
    assert _rel_l2(got, want) <= 1e-5
    assert len(staged.report["emulator"]["stages"]) == 2


@pytest.mark.parametrize("name", ["gpt2_2layer", "llama_2layer"])
def test_micro_batches_keep_their_own_tensors(name: str) -> None:
    """Three micro-batches in fill-drain order (stage 0 runs micro-batch 1 before stage 1
    runs micro-batch 0): each result equals the unstaged program on that micro-batch."""
    from rdu_compiler.runtime.stages import StagedEmulator

    one, staged, inputs = _programs(name)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 512, size=tuple(inputs[0].shape), dtype=np.int64) for _ in range(3)]
    emulator = StagedEmulator(staged.module, staged.fabric)
    args = [staged._arguments((torch.from_numpy(b),)) for b in batches]
    outs, stats = emulator.run_microbatches(args)
    assert [len(s) for s in stats.stages] == [3, 3]
    results = [np.asarray(o[0]) for o in outs]
    for b, got in zip(batches, results, strict=True):
        assert _rel_l2(got, one.run(torch.from_numpy(b)).numpy()) <= 1e-5
    assert _rel_l2(results[0], results[1]) > 1e-3  # different micro-batches, different logits


def test_gpt2_cut_falls_on_the_layer_boundary() -> None:
    """GPT-2 2-layer at pp=2: stage 0 takes the embeddings and layer 0's 12 weights, stage
    1 layer 1's and the LM head; only the residual stream (1 x 16 x 64 f32 = 4 KiB) crosses."""
    _, staged, _ = _programs("gpt2_2layer")
    pipe = staged.report["pipeline"]
    transfers = [t for st in pipe["stages"] for t in st["transfers"]]
    assert [t["bytes"] for t in transfers] == [4096]
    names = staged.imported.arg_names
    fns = [op for op in staged.module.ops if isinstance(op, func.FuncOp)]
    weights = [{names[i] for i in fn.attributes["rdu.args"].get_values()} for fn in fns]  # type: ignore[attr-defined]
    assert sum("_h_0_" in n for n in weights[0]) == 12 and not any("_h_1_" in n for n in weights[0])
    assert sum("_h_1_" in n for n in weights[1]) == 12 and not any("_h_0_" in n for n in weights[1])
    vocab = {"p_lm_transformer_wte_weight", "p_lm_lm_head_weight"}  # tied: the gather and the LM head read one
    assert weights[0] & vocab and weights[1] & vocab  # each stage holds its copy


def test_a_deadlocked_program_never_reaches_the_emulator() -> None:
    from rdu_compiler.fabric import load_fabric
    from rdu_compiler.ir import parse_module
    from rdu_compiler.runtime.stages import StagedEmulator

    text = """
    func.func @s0(%x: tensor<4xf32>) -> tensor<4xf32> attributes {rdu.stage = 0 : i64, rdu.args = array<i64: 0>, rdu.results = array<i64: 0>} {
      %y = rdu.recv from 1 channel 1 : tensor<4xf32>
      rdu.send %x to 1 channel 0 : tensor<4xf32>
      func.return %y : tensor<4xf32>
    }
    func.func @s1(%x: tensor<4xf32>) -> tensor<4xf32> attributes {rdu.stage = 1 : i64, rdu.args = array<i64: 0>, rdu.results = array<i64: 1>} {
      %y = rdu.recv from 0 channel 0 : tensor<4xf32>
      rdu.send %x to 0 channel 1 : tensor<4xf32>
      func.return %y : tensor<4xf32>
    }"""
    with pytest.raises(EmulatorError, match="deadlock.*waits on channel 1.*waits on channel 0"):
        StagedEmulator(parse_module(text), load_fabric("sn40l-node8"))


def test_pipeline_time_and_bubble_by_hand() -> None:
    from rdu_compiler.cost.pipeline import pipeline_time

    assert pipeline_time([1.0, 1.0, 1.0, 1.0], 8) == pytest.approx((11.0, 3 / 11))  # (p - 1) / (m + p - 1)
    total, bubble = pipeline_time([1.0, 3.0], 2)  # 1 + 3 + 1 x 3 = 7; busy 2 x 4 = 8 of 2 x 7
    assert total == pytest.approx(7.0) and bubble == pytest.approx(1 - 8 / 14)
    assert pipeline_time([2.0], 5) == pytest.approx((10.0, 0.0))
    with pytest.raises(ValueError, match="micro-batch"):
        pipeline_time([1.0], 0)


def test_report_sums_stages_sends_and_bubble() -> None:
    """The GPT-2 pp=2 report: each stage's time is its sections plus its sends (hop latency
    + bytes over the link, sn40l-node8's numbers); the call's time is the pipeline of 4
    micro-batches."""
    from rdu_compiler.fabric import load_fabric

    one, staged, _ = _programs("gpt2_2layer")
    node = load_fabric("sn40l-node8").node
    pipe = staged.report["pipeline"]
    s0, s1 = pipe["stages"]
    (t,) = s0["transfers"]
    assert t["seconds"] == pytest.approx(node.hop_latency_s + 4096 / node.link_bytes_per_s)
    assert s0["time_s"] == pytest.approx(s0["sections_s"] + t["seconds"]) and s1["send_s"] == 0
    times = [s0["time_s"], s1["time_s"]]
    assert staged.report["totals"]["estimated_s"] == pytest.approx(sum(times) + 3 * max(times))
    assert pipe["bubble_equal_stages"] == pytest.approx(1 / 5)
    assert staged.report["node"]["sockets_used"] == 2 and "bubble" in staged.report["node"]["note"]
    assert [s["stage"] for s in staged.report["sections"]][0] == 0 and staged.report["sections"][-1]["stage"] == 1
    # the stages' work is the unstaged program's, split: kernels and FLOPs add up (the
    # constant-only kernels, such as the causal mask, are computed by each stage that reads them)
    assert staged.report["totals"]["flops"] >= one.report["totals"]["flops"]
    assert staged.report["totals"]["flops"] <= 1.01 * one.report["totals"]["flops"]


def test_pp_needs_the_sockets() -> None:
    import rdu_compiler

    with pytest.raises(RduError, match="pp=2 stages need 2 sockets, but fabric 'tiny' has 1"):
        rdu_compiler.compile(torch.nn.Linear(8, 8), (torch.randn(2, 8),), fabric="tiny", pp=2)  # no node preset extends tiny
    # the one-socket "sn40l" stands for its node preset (fabric.node_preset)
    prog = rdu_compiler.compile(torch.nn.Linear(8, 8), (torch.randn(2, 8),), fabric="sn40l", pp=2)
    assert prog.report["fabric"]["name"] == "sn40l-node8"
    # tp with pp: testsuite/unit/test_tp_pp.py


def test_rdu_compile_pp(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`rdu-compile --pp 2 --microbatches 3 --check`: the stage programs, run and checked;
    --pp with a one-socket tool (--target triton) is one paragraph, exit 2."""
    import json

    from rdu_compiler.tools.rdu_compile import main

    out = tmp_path / "out"
    code = main([str(EXAMPLES / "mlp.py"), "--fabric", "sn40l-node8", "--pp", "2", "--microbatches", "3", "--check",
                 "-o", str(out)])
    captured = capsys.readouterr()
    assert code in (0, None), captured.err
    report = json.loads((out / "report.json").read_text())
    assert report["pipeline"]["pp"] == 2 and report["pipeline"]["microbatches"] == 3 and report["check"]["ok"]
    assert "@main_stage1" in (out / "model.mlir").read_text()
    assert "bubble" in " ".join(captured.out.split())
    with pytest.raises(SystemExit) as exited:
        main([str(EXAMPLES / "mlp.py"), "--fabric", "sn40l-node8", "--pp", "2", "--target", "triton", "-o", str(tmp_path / "t")])
    code, err = exited.value.code, capsys.readouterr().err
    assert code == 2 and "--pp compiles one program per socket" in " ".join(err.split()) and "Traceback" not in err


def test_o0_and_three_stages_on_the_mlp(tmp_path: Path) -> None:
    """-O0 (rdu-pipeline right after rdu-inline-splats, every kernel its own section) at
    pp=3 on the rack wired as a ring: the stages equal the unstaged -O0 program, and each
    send pays the ring's hops between its stages."""
    import rdu_compiler
    from rdu_compiler.frontend.torch.model_file import load_model_file

    ring = tmp_path / "ring16.toml"
    ring.write_text('extends = "sn40l-rack16"\n[fabric]\nname = "ring16"\n[sockets]\ntopology = "ring"\n')
    model, inputs = load_model_file(str(EXAMPLES / "mlp.py"))
    imported = rdu_compiler.import_model(model, inputs)
    one = rdu_compiler.compile_imported(imported, fabric=str(ring), opt_level=0)
    staged = rdu_compiler.compile_imported(imported, fabric=str(ring), opt_level=0, pp=3, microbatches=2)
    assert _rel_l2(staged.run(*inputs), one.run(*inputs)) <= 1e-5
    stages = staged.report["pipeline"]["stages"]
    assert len(stages) == 3 and all(len(st["transfers"]) >= 1 for st in stages[:2])
    hop = staged.fabric.node.hop_latency_s
    for st in stages:
        for t in st["transfers"]:  # ring: |dst - src| hops for neighbours this close
            assert t["latency_s"] == pytest.approx(hop * abs(t["to_stage"] - st["stage"]))
    assert all(s["kernels"] and len(s["kernels"]) == 1 for s in staged.report["sections"])  # -O0: one kernel each


def test_pipeline_schedule_is_the_cost_models_step_time() -> None:
    from rdu_compiler.runtime.trace import pipeline_schedule

    times = [3.0, 5.0, 2.0]
    slots = pipeline_schedule(times, 4)
    assert slots[-1][-1][1] == pytest.approx(sum(times) + 3 * max(times))
    assert slots[1][0] == (3.0, 8.0) and slots[2][0] == (8.0, 10.0) and slots[0][1] == (3.0, 6.0)
    assert slots[1][1] == (8.0, 13.0)  # waits for itself, not for stage 0 (done at 6)
    with pytest.raises(ValueError, match="micro-batch"):
        pipeline_schedule(times, 0)


def test_rdu_compile_trace_with_pp_has_one_process_per_socket(tmp_path: Path) -> None:
    import json

    from rdu_compiler.tools import rdu_compile

    trace, out = tmp_path / "t.json", tmp_path / "out"
    example = Path(__file__).resolve().parents[2] / "examples" / "gpt2_2layer.py"
    rdu_compile.main([str(example), "--fabric", "sn40l-node8", "--pp", "2", "--tp", "2", "--microbatches", "3",
                      "-o", str(out), "--trace", str(trace), "--no-run"])
    events = [ev for ev in json.loads(trace.read_text())["traceEvents"] if ev["ph"] == "X" and ev["pid"] >= 10]
    report = json.loads((out / "report.json").read_text())
    assert sorted({ev["pid"] for ev in events}) == [10, 11, 12, 13]  # 2 stages x tp 2
    end = max(ev["ts"] + ev["dur"] for ev in events if ev["name"] != "sync")
    assert end == pytest.approx(report["pipeline"]["step_s"] * 1e6, rel=1e-9)
    stage1 = [ev for ev in events if ev["pid"] == 12 and ev["name"] != "sync"]
    assert min(ev["ts"] for ev in stage1) == pytest.approx(report["pipeline"]["stages"][0]["time_s"] * 1e6)
    assert {ev["args"]["microbatch"] for ev in stage1} == {0, 1, 2}
