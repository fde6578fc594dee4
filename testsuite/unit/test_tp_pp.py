"""Tensor x pipeline parallelism (issue 13): `compile(tp=T, pp=P)` makes P stage programs,
each SPMD over T sockets (stage s on sockets s T .. s T + T - 1), rank r of a stage sending
to rank r of the next. The emulator against the unsharded program (GPT-2 / Llama 2-layer at
tp = 2 x pp = 2), the cost (per-stage collectives, the group sends, the bubble, one sync),
the verifiers and the refusals."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from xdsl.dialects import func

import rdu_compiler
from rdu_compiler.dialects import rdu
from rdu_compiler.errors import RduError
from rdu_compiler.passes.shard_layout import arg_shards, module_tp

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@functools.cache
def _programs(name: str) -> tuple[Any, Any, Any]:
    """(unsharded one-socket, tp=2 x pp=2 with 3 micro-batches) programs and the inputs."""
    from rdu_compiler.frontend.torch.model_file import load_model_file

    model, inputs = load_model_file(str(EXAMPLES / f"{name}.py"))
    imported = rdu_compiler.import_model(model, inputs)
    one = rdu_compiler.compile_imported(imported, fabric="sn40l-node8")
    both = rdu_compiler.compile_imported(imported, fabric="sn40l-node8", tp=2, pp=2, microbatches=3)
    return one, both, inputs


def _rel_l2(got: Any, want: Any) -> float:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def _stages(program: Any) -> list[func.FuncOp]:
    return [op for op in program.module.ops if isinstance(op, func.FuncOp)]


@pytest.mark.parametrize("name", ["gpt2_2layer", "llama_2layer"])
def test_tp2_pp2_equals_the_unsharded_program(name: str) -> None:
    one, both, inputs = _programs(name)
    assert module_tp(both.module) == 2
    fns = _stages(both)
    assert [f.attributes[rdu.STAGE_ATTR].value.data for f in fns] == [0, 1]  # type: ignore[attr-defined]
    for fn in fns:  # each stage is SPMD: sharded weights, its own all-reduces over its 2 sockets
        assert any(s is not None for s in arg_shards(fn))
        reduces = [op for op in fn.body.block.ops if isinstance(op, rdu.AllReduceOp)]
        assert reduces and all(op.group.value.data == 2 for op in reduces)
    assert sum(isinstance(op, rdu.SendOp) for fn in fns for op in fn.body.block.ops) >= 1
    got = both.run(*inputs)
    assert _rel_l2(got, one.run(*inputs)) <= 1e-5
    stats = both.last_stats
    assert stats is not None and len(stats.stages) == 2 and len(stats.stages[0][0].sockets) == 2


def test_llama_tp4_pp2_kv_heads_shared_by_pairs_in_each_stage() -> None:
    """Llama 2-layer has 2 KV heads: at tp = 4 each stage splits k/v 2 ways (socket pairs,
    `rdu.shard = array<i64: 0, 4, 1, 2>` kept on the stage's arguments); 8 sockets."""
    from rdu_compiler.frontend.torch.model_file import load_model_file

    one, _, inputs = _programs("llama_2layer")
    model, _ = load_model_file(str(EXAMPLES / "llama_2layer.py"))
    prog = rdu_compiler.compile(model, inputs, fabric="sn40l-node8", tp=4, pp=2)
    assert any(s is not None and len(s) == 4 and s[3] == 2 for fn in _stages(prog) for s in arg_shards(fn))
    assert prog.report["node"]["sockets_used"] == 8
    assert _rel_l2(prog.run(*inputs), one.run(*inputs)) <= 1e-5


@pytest.mark.parametrize("name", ["gpt2_2layer", "llama_2layer"])
def test_tp2_pp2_micro_batches_keep_their_own_tensors(name: str) -> None:
    from rdu_compiler.runtime.stages import StagedEmulator

    one, both, inputs = _programs(name)
    rng = np.random.default_rng(1)
    batches = [rng.integers(0, 512, size=tuple(inputs[0].shape), dtype=np.int64) for _ in range(3)]
    emulator = StagedEmulator(both.module, both.fabric)
    outs, stats = emulator.run_microbatches([both._arguments((torch.from_numpy(b),)) for b in batches])
    assert [len(s) for s in stats.stages] == [3, 3]
    for b, out in zip(batches, outs, strict=True):
        assert _rel_l2(out[0], one.run(torch.from_numpy(b)).numpy()) <= 1e-5
    assert _rel_l2(outs[0][0], outs[1][0]) > 1e-3


def test_report_stage_time_is_sections_collectives_and_group_sends() -> None:
    from rdu_compiler.cost.pipeline import group_send, pipeline_time

    _, both, _ = _programs("gpt2_2layer")
    rep, node = both.report, both.fabric.node
    pipe = rep["pipeline"]
    assert pipe["tp"] == 2 and pipe["pp"] == 2 and pipe["microbatches"] == 3
    for st in pipe["stages"]:
        assert st["sockets"] == [2 * st["stage"], 2 * st["stage"] + 1]
        assert st["collectives"] and st["collectives_s"] == pytest.approx(sum(c["seconds"] for c in st["collectives"]))
        for t in st["transfers"]:
            assert t["seconds"] == pytest.approx(group_send(node, t["bytes"], st["stage"], t["to_stage"], 2).seconds)
        assert st["time_s"] == pytest.approx(st["sections_s"] + st["collectives_s"] + st["send_s"])
    times = [st["time_s"] for st in pipe["stages"]]
    assert rep["totals"]["estimated_s"] == pytest.approx(pipeline_time(times, 3)[0] + node.sync_s)
    assert rep["node"]["sockets_used"] == 4 and "2 tensor-parallel sockets each" in rep["node"]["note"]
    assert [(s["socket"], s["stage"], s["rank"]) for s in rep["sockets"]] == [(0, 0, 0), (1, 0, 1), (2, 1, 0), (3, 1, 1)]
    assert len(rep["collectives"]) == sum(len(st["collectives"]) for st in pipe["stages"])


def test_group_send_by_hand() -> None:
    """Rank r of stage s to rank r of stage s + 1, all T at once: on a ring of 16 (the rack's
    links and latency wired as a ring) at T = 8 each path is 8 hops and the link between
    the stages carries all 8 transfers; on a full node each pair has its own link; on the
    rack's two nodes (`nodes`) stage 0 -> 1 at T = 8 is socket i to socket i + 8, one hop
    each on its own link; T = 1 is one send_recv."""
    import dataclasses

    from rdu_compiler.cost.collectives import send_recv
    from rdu_compiler.cost.pipeline import group_send
    from rdu_compiler.fabric import load_fabric

    rack = load_fabric("sn40l-rack16").node
    ring = dataclasses.replace(rack, topology="ring", node_sockets=0)
    a, b, m = ring.hop_latency_s, ring.link_bytes_per_s, 1e6
    c = group_send(rack, m, 0, 1, 8)
    assert c.latency_s == pytest.approx(a) and c.transfer_s == pytest.approx(m / b)
    c = group_send(rack, m, 1, 2, 4)  # sockets 4..7 -> 8..11: other node, other index: 2 hops
    assert c.latency_s == pytest.approx(2 * a) and c.transfer_s == pytest.approx(m / b)
    c = group_send(ring, m, 0, 1, 8)
    assert c.latency_s == pytest.approx(8 * a) and c.transfer_s == pytest.approx(8 * m / b)
    c = group_send(ring, m, 1, 2, 4)  # sockets 4..7 -> 8..11: 4 hops, the 7-8 link carries all 4
    assert c.latency_s == pytest.approx(4 * a) and c.transfer_s == pytest.approx(4 * m / b)
    assert group_send(ring, m, 2, 5, 1) == send_recv(ring, m, 2, 5)
    node8 = load_fabric("sn40l-node8").node
    if node8.topology == "full":
        c = group_send(node8, m, 0, 1, 4)
        assert c.latency_s == pytest.approx(node8.hop_latency_s) and c.transfer_s == pytest.approx(m / node8.link_bytes_per_s)
    with pytest.raises(ValueError, match="not in a node of 16"):
        group_send(ring, m, 1, 2, 8)  # stage 2 of 8 sockets would be sockets 16..23


def test_tp_x_pp_needs_the_sockets() -> None:
    net, x = torch.nn.Linear(8, 8), (torch.randn(2, 8),)
    with pytest.raises(RduError, match=r"--sockets 2 is fewer than tp x pp = 2 x 2 = 4"):
        rdu_compiler.compile(net, x, fabric="sn40l-node8", tp=2, pp=2, sockets=2)
    with pytest.raises(RduError, match=r"--sockets 3 is fewer than tp x pp = 2 x 2 = 4"):
        rdu_compiler.compile(net, x, fabric="sn40l-node8", tp=2, pp=2, sockets=3)
    with pytest.raises(RduError, match=r"tp x pp = 4 x 4 = 16 sockets .* fabric 'sn40l-node8' has 8"):
        rdu_compiler.compile(net, x, fabric="sn40l-node8", tp=4, pp=4)
    with pytest.raises(RduError, match=r"--sockets 9 exceeds the 8 socket\(s\) of fabric 'sn40l-node8'"):
        rdu_compiler.compile(net, x, fabric="sn40l-node8", tp=2, pp=2, sockets=9)
    prog = rdu_compiler.compile(net, x, fabric="sn40l-node8", tp=2, pp=2, sockets=5)  # more than 4: the rest idle
    assert prog.report["node"]["sockets_used"] == 4


_SPMD = """
builtin.module attributes {rdu.fabric = "sn40l-node8", rdu.tp = TP : i64} {
  func.func @s0(%x: tensor<4x8xf32>) attributes {rdu.stage = 0 : i64} {
    %s = rdu.all_reduce %x group GROUP : tensor<4x8xf32> -> tensor<4x8xf32>
    rdu.send %s to 1 channel 0 : tensor<4x8xf32>
    func.return
  }
  func.func @s1() -> tensor<4x8xf32> attributes {rdu.stage = 1 : i64} {
    %y = rdu.recv from 0 channel 0 : tensor<4x8xf32>
    func.return %y : tensor<4x8xf32>
  }
  STAGES
}"""


def _spmd(tp: int, group: int, extra_stages: int = 0) -> str:
    more = "\n".join(f"func.func @e{i}() attributes {{rdu.stage = {2 + i} : i64}} {{\n func.return\n }}"
                     for i in range(extra_stages))
    return _SPMD.replace("TP", str(tp)).replace("GROUP", str(group)).replace("STAGES", more)


def test_verifiers_cover_the_combined_program() -> None:
    from xdsl.utils.exceptions import VerifyException

    from rdu_compiler.ir import parse_module

    parse_module(_spmd(2, 2)).verify()  # 2 stages x 2 sockets on 8: fine
    with pytest.raises(VerifyException, match="group 4 does not divide the program's tp = 2"):
        parse_module(_spmd(2, 4)).verify()
    with pytest.raises(RduError, match="4 stage programs of tp = 4 sockets each need 16 sockets"):
        parse_module(_spmd(4, 4, extra_stages=2)).verify()
    # a rank's shard sent where the next stage expects the whole tensor: refused by the channel check
    wrong = _spmd(2, 2).replace("%y = rdu.recv from 0 channel 0 : tensor<4x8xf32>", "%y = rdu.recv from 0 channel 0 : tensor<4x4xf32>")
    wrong = wrong.replace("func.return %y : tensor<4x8xf32>", "func.return %y : tensor<4x4xf32>").replace(
        "() -> tensor<4x8xf32> attributes {rdu.stage = 1", "() -> tensor<4x4xf32> attributes {rdu.stage = 1")
    with pytest.raises(RduError, match="the send carries tensor<4x8xf32> but the recv expects tensor<4x4xf32>"):
        parse_module(wrong).verify()


def test_rdu_compile_tp_pp(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`rdu-compile --tp 2 --pp 2 --check` runs and checks the combined program;
    `--sockets 3` is one paragraph, exit 2."""
    import json

    from rdu_compiler.tools.rdu_compile import main

    out = tmp_path / "out"
    code = main([str(EXAMPLES / "mlp.py"), "--fabric", "sn40l-node8", "--tp", "2", "--pp", "2", "--microbatches", "2",
                 "--check", "-o", str(out)])
    captured = capsys.readouterr()
    assert code in (0, None), captured.err
    report = json.loads((out / "report.json").read_text())
    assert report["pipeline"]["tp"] == 2 and report["node"]["sockets_used"] == 4 and report["check"]["ok"]
    with pytest.raises(SystemExit) as exited:
        main([str(EXAMPLES / "mlp.py"), "--fabric", "sn40l-node8", "--tp", "2", "--pp", "2", "--sockets", "3",
              "--no-run", "-o", str(tmp_path / "bad")])
    err = " ".join(capsys.readouterr().err.split())
    assert exited.value.code == 2 and "fewer than tp x pp = 2 x 2 = 4" in err and "Traceback" not in err
