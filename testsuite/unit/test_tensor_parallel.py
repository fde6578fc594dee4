"""Tensor parallelism end to end: rdu-shard{tp=N} on GPT-2 2-layer and Llama 2-layer (GQA),
run on the node emulator, against the unsharded program (fp32 rel L2 <= 1e-5), with the
Megatron layout checked (two all-reduces per decoder layer, one all-gather of the logits,
column/row shards recorded on the weight arguments), plus the refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from xdsl.dialects import func
from xdsl.ir import Operation

import rdu_compiler
from rdu_compiler.api import compile_imported, import_model
from rdu_compiler.dialects import rdu
from rdu_compiler.errors import EmulatorError, RduError
from rdu_compiler.frontend.torch.model_file import load_model_file
from rdu_compiler.passes.shard_layout import arg_shards, module_tp

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _example(name: str) -> tuple[torch.nn.Module, tuple[Any, ...]]:
    return load_model_file(EXAMPLES / f"{name}.py")


@pytest.fixture(scope="module", params=["gpt2_2layer", "llama_2layer"])
def model(request: pytest.FixtureRequest) -> dict[str, Any]:
    net, inputs = _example(request.param)
    imported = import_model(net, inputs)
    single = compile_imported(imported, "sn40l-node8", 1)
    return {"name": request.param, "imported": imported, "inputs": inputs, "ref": single.run(*inputs).numpy(),
            "single_s": single.report["totals"]["estimated_s"]}


def _ops(program: Any, kind: type[Operation]) -> list[Operation]:
    fn = next(op for op in program.module.ops if isinstance(op, func.FuncOp))
    return [op for op in fn.body.block.ops if isinstance(op, kind)]


def _dominance_ok(program: Any) -> bool:
    fn = next(op for op in program.module.ops if isinstance(op, func.FuncOp))
    seen: set[Any] = set(fn.body.block.args)
    for op in fn.body.block.ops:
        if any(v not in seen for v in op.operands):
            return False
        seen.update(op.results)
    return True


@pytest.mark.parametrize("tp", [2, 4])
def test_sharded_equals_unsharded(model: dict[str, Any], tp: int) -> None:
    prog = compile_imported(model["imported"], "sn40l-node8", 1, tp=tp)
    assert module_tp(prog.module) == tp and _dominance_ok(prog)
    out = prog.run(*model["inputs"]).numpy()
    ref = model["ref"]
    assert np.linalg.norm(out - ref) / np.linalg.norm(ref) <= 1e-5
    # Megatron: attention output and MLP down projections are row-parallel -> 2 all-reduces per layer,
    # plus one of the vocabulary-parallel embedding's partial rows;
    # the LM head is column-parallel (vocabulary) -> one all-gather of the logits
    assert len(_ops(prog, rdu.AllReduceOp)) == 2 * 2 + 1
    gathers = _ops(prog, rdu.AllGatherOp)
    assert len(gathers) == 1 and rdu.shape_of(gathers[0].results[0].type)[-1] == 512
    assert len(prog.report["collectives"]) == 6 and prog.report["tp_notes"] == []
    assert prog.report["node"]["sockets_used"] == tp and "one of the" not in prog.report["node"]["note"]
    sockets = prog.report["sockets"]
    assert len(sockets) == tp
    totals = prog.report["totals"]
    assert totals["estimated_s"] == pytest.approx(totals["socket_sections_s"] + totals["collectives_s"] + totals["sync_s"])
    assert sockets[0]["total_s"] == pytest.approx(totals["estimated_s"])
    assert prog.last_stats is not None and len(prog.last_stats.sockets) == tp


def test_weights_are_sharded_megatron_style(model: dict[str, Any]) -> None:
    prog = compile_imported(model["imported"], "sn40l-node8", 1, tp=2)
    fn = next(op for op in prog.module.ops if isinstance(op, func.FuncOp))
    shard = dict(zip(model["imported"].arg_names, arg_shards(fn), strict=True))
    if model["name"] == "gpt2_2layer":  # Conv1D weights are (in, out): c_attn/c_fc by columns, c_proj by rows
        assert shard["p_lm_transformer_h_0_attn_c_attn_weight"] == (1, 2, 3)  # q|k|v: 3 blocks
        assert shard["p_lm_transformer_h_0_mlp_c_fc_weight"] == (1, 2, 1)
        assert shard["p_lm_transformer_h_0_attn_c_proj_weight"] == (0, 2, 1)
        assert shard["p_lm_transformer_h_0_mlp_c_proj_weight"] == (0, 2, 1)
        assert shard["p_lm_transformer_wte_weight"] == (0, 2, 1)  # tied: one vocabulary shard for the lookup and LM head
        assert shard["p_lm_transformer_h_0_ln_1_weight"] is None
    else:  # nn.Linear weights are (out, in)
        for w in ("q_proj", "k_proj", "v_proj"):
            assert shard[f"p_lm_model_layers_0_self_attn_{w}_weight"] == (0, 2, 1)
        assert shard["p_lm_model_layers_0_self_attn_o_proj_weight"] == (1, 2, 1)
        assert shard["p_lm_model_layers_1_mlp_gate_proj_weight"] == (0, 2, 1)
        assert shard["p_lm_model_layers_1_mlp_down_proj_weight"] == (1, 2, 1)
        assert shard["p_lm_lm_head_weight"] == (0, 2, 1)  # vocabulary split
        assert shard["p_lm_model_embed_tokens_weight"] == (0, 2, 1)  # vocabulary-parallel embedding


def test_gqa_kv_heads_shared_by_socket_pairs_when_tp_exceeds_them() -> None:
    """Llama 2-layer has 2 KV heads: at tp = 4 the k/v projections are split 2 ways (each
    KV head on a pair of sockets); q is split 4 ways; no KV data crosses sockets. HF's
    repeat_kv expands the pair's KV head for its 2 query heads; `passes/shard_refine.py`
    lifts each socket's re-split of it into the expand (a broadcast loop kept 1/2), so no
    `rdu.shard` is left between kernels to end a section and the expanded K/V never
    reach HBM at twice their size."""
    net, inputs = _example("llama_2layer")
    imported = import_model(net, inputs)
    prog = compile_imported(imported, "sn40l-node8", 1, tp=4, keep_ir=True)
    fn = next(op for op in prog.module.ops if isinstance(op, func.FuncOp))
    shard = dict(zip(imported.arg_names, arg_shards(fn), strict=True))
    assert shard["p_lm_model_layers_0_self_attn_k_proj_weight"] == (0, 4, 1, 2)  # 2 distinct shards of 4 sockets
    assert shard["p_lm_model_layers_0_self_attn_v_proj_weight"] == (0, 4, 1, 2)
    assert shard["p_lm_model_layers_0_self_attn_q_proj_weight"] == (0, 4, 1)
    assert len(_ops(prog, rdu.AllGatherOp)) == 1 and len(_ops(prog, rdu.AllReduceOp)) == 5
    refining = [op for op in _ops(prog, rdu.ShardOp) if op.n_ways != op.group.value.data]  # type: ignore[attr-defined]
    assert refining == []
    after_shard = prog.snapshots["rdu-shard"]
    assert "ways 4" not in after_shard and after_shard.count("broadcast loop") == 2 * 2  # K and V expands, 2 layers
    with torch.no_grad():
        eager = net(*inputs).numpy()
    out = prog.run(*inputs).numpy()
    assert np.linalg.norm(out - eager) / np.linalg.norm(eager) <= 1e-5
    # same sections as tp = 2 (where each socket holds a whole KV head); fewer HBM bytes per socket
    tp2 = compile_imported(imported, "sn40l-node8", 1, tp=2)
    assert prog.report["totals"]["sections"] == tp2.report["totals"]["sections"]
    assert prog.report["totals"]["hbm_bytes"] < tp2.report["totals"]["hbm_bytes"]


_PAR = "#linalg.iterator_type<parallel>"
_SHARD = "%s = rdu.shard %k dim 1 group 2 ways 4 : tensor<4x2x8xf32> -> tensor<4x1x8xf32>"


def _kernel(name: str, inputs: list[str], types: list[str], maps: list[str], init: str = "%e",
            payload: str = "rdu.yield %a : f32") -> str:
    """A map kernel over (4, 2, 8) writing `init` (tensor<4x2x8xf32>) at the identity map."""
    amaps = ", ".join(f"affine_map<(d0, d1, d2) -> ({m})>" for m in [*maps, "d0, d1, d2"])
    args = ", ".join(["%a: f32", *(f"%a{i}: f32" for i in range(len(inputs)))])
    return (f'%{name} = "rdu.kernel"({", ".join([*inputs, init])}) <{{kind = #rdu.pattern<map>, domain = array<i64: 4, 2, 8>, '
            f'indexing_maps = [{amaps}], iterator_types = [{_PAR}, {_PAR}, {_PAR}], sym_name = "{name}", '
            f'operandSegmentSizes = array<i32: {len(inputs)}, 1, 0>}}> ({{\n^bb0({args}):\n  {payload}\n}}) : '
            f'({", ".join([*types, "tensor<4x2x8xf32>"])}) -> tensor<4x2x8xf32>')


def _refine_case(*lines: str) -> tuple[Any, int]:
    """A function ending in `_SHARD` (a re-split of %k), after `lift_refining_shards`:
    (the function, how many shards were lifted)."""
    from rdu_compiler.ir import parse_module
    from rdu_compiler.passes.shard_refine import lift_refining_shards

    body = "\n".join(["%e = tensor.empty() : tensor<4x2x8xf32>", *lines, _SHARD])
    m = parse_module("builtin.module {\n func.func @main(%x: tensor<4x8xf32>, %w: tensor<4x2x8xf32>) -> "
                     f"tensor<4x1x8xf32> {{\n{body}\n func.return %s : tensor<4x1x8xf32>\n }}\n}}")
    fn = next(op for op in m.ops if isinstance(op, func.FuncOp))
    lifted = lift_refining_shards(type("Sharder", (), {"fn": fn, "lay": {}})())  # type: ignore[arg-type]
    m.verify()
    return fn, lifted


def test_refining_shard_lifted_through_a_chain_into_a_broadcast() -> None:
    """expand (reads no d1) -> a map reading d1 as d1 -> re-split on d1: both kernels shrink
    d1 to 1 and the shard is gone (every piece of the expand along d1 is the same)."""
    fn, lifted = _refine_case(_kernel("b", ["%x"], ["tensor<4x8xf32>"], ["d0, d2"]),
                              _kernel("k", ["%b"], ["tensor<4x2x8xf32>"], ["d0, d1, d2"]))
    assert lifted == 1 and not [op for op in fn.body.block.ops if isinstance(op, rdu.ShardOp)]
    ks = [op for op in fn.body.block.ops if isinstance(op, rdu.KernelOp)]
    assert [k.domain_sizes for k in ks] == [(4, 1, 8), (4, 1, 8)]
    assert "broadcast loop 1" in ks[0].attributes["rdu.tp_loop"].data  # type: ignore[attr-defined]


@pytest.mark.parametrize("lines", [
    [_kernel("k", ["%w"], ["tensor<4x2x8xf32>"], ["d0, d1, d2"])],  # reads a function argument along d1
    [_kernel("k", ["%w"], ["tensor<4x2x8xf32>"], ["d0, -d1 + 1, d2"])],  # reads d1 reversed
    [_kernel("k", ["%x"], ["tensor<4x8xf32>"], ["d0, d2"], payload="%i = rdu.index 1 : index\n  rdu.yield %a : f32")],
    [_kernel("b", ["%x"], ["tensor<4x8xf32>"], ["d0, d2"]), _kernel("k", ["%b", "%b"], ["tensor<4x2x8xf32>"] * 2,
                                                                       ["d0, d1, d2", "d0, d1, d2"])],  # %b used twice
    [_kernel("k", ["%x"], ["tensor<4x8xf32>"], ["d0, d2"], init="%w")],  # an init the kernel would have to read
], ids=["argument", "reversed", "index", "two-uses", "init"])
def test_refining_shard_stays_where_lifting_is_not_exact(lines: list[str]) -> None:
    fn, lifted = _refine_case(*lines)
    assert lifted == 0 and len([op for op in fn.body.block.ops if isinstance(op, rdu.ShardOp)]) == 1


def test_reshape_whose_digit_straddles_two_dims_is_not_lifted() -> None:
    from rdu_compiler.passes.shard_refine import _view_source_dim

    assert _view_source_dim((3, 4), (12,), 0, 1, 4) is None  # 4 pieces of 3 cut across rows of 4
    assert _view_source_dim((1, 1, 2, 16, 16), (1, 2, 16, 16), 1, 1, 2) == (2, 1)  # repeat_kv's reshape


class _Odd(torch.nn.Module):
    """A 6-column hidden layer: tp = 4 does not divide it, so it may not be split; the
    8-column output layer may, and softmax's max over it may not (a max is not a sum)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(8, 6)
        self.b = torch.nn.Linear(6, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x))).softmax(-1)


def test_non_divisible_falls_back_to_replicated() -> None:
    torch.manual_seed(0)
    net, x = _Odd().eval(), torch.randn(4, 8)
    prog = rdu_compiler.compile(net, (x,), fabric="sn40l-node8", tp=4)
    with torch.no_grad():
        eager = net(x).numpy()
    np.testing.assert_allclose(prog.run(x).numpy(), eager, rtol=1e-5, atol=1e-6)
    fn = next(op for op in prog.module.ops if isinstance(op, func.FuncOp))
    shard = dict(zip(prog.imported.arg_names, arg_shards(fn), strict=True))
    assert shard["p_a_weight"] is None and shard["p_a_bias"] is None  # 6 columns: replicated, not split 4 ways
    assert shard["p_b_weight"] == (0, 4, 1)  # 8 columns: column-parallel
    assert shard["x"] is None  # a user input is never taken for a weight
    # softmax's max is not a sum: its input is gathered first (never a partial max)
    assert _ops(prog, rdu.AllGatherOp)


@pytest.mark.parametrize(("fabric", "tp", "sockets"), [("sn40l-node8", 3, None), ("sn40l-node8", 16, None),
                                                       ("tiny", 2, None), ("sn40l", 32, None), ("sn40l-node8", 4, 6)])
def test_refuses_tp_the_node_cannot_run(fabric: str, tp: int, sockets: int | None) -> None:
    """("sn40l", 2) compiles for sn40l-node8 (`fabric.node_preset`); no preset extends tiny,
    and none of sn40l's holds 32 sockets."""
    torch.manual_seed(0)
    with pytest.raises(RduError, match=r"cannot run on fabric .* socket\(s\)"):
        rdu_compiler.compile(_Odd().eval(), (torch.randn(4, 8),), fabric=fabric, tp=tp, sockets=sockets)


def test_single_socket_emulator_refuses_sharded_program() -> None:
    from rdu_compiler.runtime.emulator import Emulator

    torch.manual_seed(0)
    prog = rdu_compiler.compile(_Odd().eval(), (torch.randn(4, 8),), fabric="sn40l-node8", tp=2)
    with pytest.raises(EmulatorError, match="node emulator"):
        Emulator(prog.module, prog.fabric).run([])


_MLP = '''
import torch

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16)).eval()
example_inputs = (torch.randn(4, 16),)
'''


def test_cli_tp(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from rdu_compiler.tools.rdu_compile import main

    src = tmp_path / "mlp.py"
    src.write_text(_MLP)
    trace = tmp_path / "trace.json"
    main([str(src), "--fabric", "sn40l-node8", "--tp", "4", "--check", "-o", str(tmp_path / "out"), "--trace", str(trace)])
    out = " ".join(capsys.readouterr().out.split())
    assert "tensor parallel over 4 of the 8 sockets" in out and "OK" in out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["node"]["sockets_used"] == 4 and len(report["sockets"]) == 4
    assert [c["op"] for c in report["collectives"]] == ["rdu.all_reduce"]  # column then row-parallel
    assert "rdu.shard = array<i64: 0, 4, 1>" in (tmp_path / "out" / "model.mlir").read_text()
    events = json.loads(trace.read_text())["traceEvents"]  # one process per socket, the all-reduce on each
    names = {e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert {f"socket {r}, modelled time (us)" for r in range(4)} <= names
    ends = [max(e["ts"] + e["dur"] for e in events if e.get("pid") == 10 + r and e["ph"] == "X") for r in range(4)]
    assert ends[0] == pytest.approx(report["totals"]["estimated_s"] * 1e6)
    assert sum(e["name"] == "rdu.all_reduce" for e in events) == 4
    with pytest.raises(SystemExit) as e:
        main([str(src), "--fabric", "sn40l-node8", "--tp", "3", "--no-run", "-o", str(tmp_path / "bad")])
    assert e.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("error: tp = 3") and "Traceback" not in err


@pytest.mark.parametrize("batch,seq,tp", [(2, 1, 4), (3, 4, 2)])
def test_batched_attention_keeps_megatrons_layout(batch: int, seq: int, tp: int) -> None:
    """With a batch dim, attention's bmm reads the heads merged with the batch (`8 * b + h`):
    the split head loop is then not the outermost term. It used to be refused there, so the
    scores were gathered, the next norm's hidden dim split and the MLP all-reduced on its
    11008-wide partials (4 all-gathers and 2 all-reduces of 180 MB per socket for a
    Llama-2-7B layer at batch 8); now the batch terms fall in the shard's blocks."""
    from rdu_compiler.coe.llama import LlamaSpec, TPLayer

    toy = LlamaSpec("toy", hidden=256, heads=8, kv_heads=8, mlp=512, layers=1, vocab=1000)
    torch.manual_seed(0)
    layer = TPLayer(toy, 1).eval()
    for p in layer.parameters():
        torch.nn.init.normal_(p, std=0.05)
    d, past = toy.head_dim, 8
    inputs = (torch.randn(batch, seq, toy.hidden), torch.randn(seq, d), torch.randn(seq, d),
              torch.randn(batch, toy.kv_heads, past, d), torch.randn(batch, toy.kv_heads, past, d))
    program = rdu_compiler.compile(layer, inputs, fabric="sn40l-node8", tp=tp)
    assert [(c["op"], c["bytes_per_socket"]) for c in program.report["collectives"]] == \
        [("rdu.all_reduce", batch * seq * toy.hidden * 4)] * 2
    want = layer(*inputs)
    got = program.run(*inputs)
    assert float((got - want).norm() / want.norm()) <= 1e-5
