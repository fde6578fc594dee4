"""Vocabulary-parallel embedding under rdu-shard{tp=N} (issue 13; `passes/shard_vocab.py`):
the token table split by rows, a masked lookup, one all-reduce of the partial rows; the
per-socket HBM footprint drop and the extra all-reduce in the report; a vocabulary tp does
not divide kept replicated with a note; an id outside the table still refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from xdsl.dialects import func

import rdu_compiler
from rdu_compiler.api import compile_imported, import_model
from rdu_compiler.dialects import rdu
from rdu_compiler.errors import EmulatorError
from rdu_compiler.passes.shard_layout import arg_shards

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class _Lookup(torch.nn.Module):
    """An embedding of `vocab` rows of 32 and a 32 -> 16 projection."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, 32)
        self.proj = torch.nn.Linear(32, 16)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.proj(self.emb(ids))


def _fn(program: Any) -> func.FuncOp:
    return next(op for op in program.module.ops if isinstance(op, func.FuncOp))


def _lookup(vocab: int) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    ids = torch.tensor([[0, vocab - 1, 3, vocab // 2, 1, vocab - 2, 5, 2]], dtype=torch.int64)  # both ends of the table
    return _Lookup(vocab).eval(), ids


@pytest.mark.parametrize("tp", [2, 4])
def test_table_split_by_rows_equals_eager(tp: int) -> None:
    net, ids = _lookup(64)
    prog = rdu_compiler.compile(net, (ids,), fabric="sn40l-node8", tp=tp)
    shard = dict(zip(prog.imported.arg_names, arg_shards(_fn(prog)), strict=True))
    assert shard["p_emb_weight"] == (0, tp, 1)  # rows 64 / tp per socket
    kernels = [op for op in _fn(prog).walk() if isinstance(op, rdu.KernelOp) and "rdu.tp_loop" in op.attributes]
    assert any("vocabulary-parallel: rows" in op.attributes["rdu.tp_loop"].data for op in kernels)  # type: ignore[attr-defined]
    reduces = [c for c in prog.report["collectives"] if c["op"] == "rdu.all_reduce"]
    assert reduces and reduces[0]["bytes_per_socket"] == 8 * 32 * 4  # the partial embeddings [1, 8, 32] f32
    with torch.no_grad():
        eager = net(ids).numpy()
    np.testing.assert_allclose(prog.run(ids).numpy(), eager, rtol=1e-5, atol=1e-6)


_LOOKUP = """
builtin.module attributes {rdu.fabric = "sn40l-node8"} {
  func.func @embed(%table: tensor<8x4xf32>, %ids: tensor<1x3xi64> {rdu.input}) -> tensor<1x3x4xf32> {
    %e = tensor.empty() : tensor<1x3x4xf32>
    %r = "rdu.kernel"(%ids, %e, %table) <{kind = #rdu.pattern<gather>, domain = array<i64: 1, 3, 4>, indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], sym_name = "k1_gather", operandSegmentSizes = array<i32: 1, 1, 1>}> ({
    ^bb0(%id: i64, %out: f32, %t: tensor<8x4xf32>):
      %row = arith.index_cast %id : i64 to index
      %col = rdu.index 2 : index
      %v = tensor.extract %t[%row, %col] : tensor<8x4xf32>
      rdu.yield %v : f32
    }) : (tensor<1x3xi64>, tensor<1x3x4xf32>, tensor<8x4xf32>) -> tensor<1x3x4xf32>
    func.return %r : tensor<1x3x4xf32>
  }
}"""


@pytest.mark.parametrize("tp", [2, 4])
def test_masked_lookup_on_every_socket_and_ids_outside_the_table_refused(tp: int) -> None:
    """The lookup alone (no torch-mlir bounds assert in front of it), sharded and placed,
    on the node emulator: every id of the table, on whichever socket holds it, gives its
    row; an id below 0 or at / above the vocabulary reaches the edge socket's lookup
    outside its shard and is refused (never a silent zero row)."""
    from rdu_compiler.fabric import load_fabric
    from rdu_compiler.ir import parse_module
    from rdu_compiler.pipeline import run_pipeline
    from rdu_compiler.runtime.node import NodeEmulator

    f = "fabric=sn40l-node8"
    module = run_pipeline(parse_module(_LOOKUP), [f"rdu-shard{{tp={tp} {f}}}", f"rdu-tile{{{f}}}", f"rdu-section{{{f}}}",
                                                  f"rdu-allocate{{{f}}}", f"rdu-place{{{f}}}"])
    node = NodeEmulator(module, load_fabric("sn40l-node8"))
    table = np.arange(32, dtype=np.float32).reshape(8, 4) + 1
    for ids in ([0, 7, 3], [4, 1, 6], [2, 5, 0]):
        out, stats = node.run([table, np.array([ids], dtype=np.int64)])
        np.testing.assert_array_equal(out[0][0], table[ids])
        assert [c.op for c in stats.collectives] == ["rdu.all_reduce"]
    for bad in ([0, 8, 1], [-1, 0, 1]):
        with pytest.raises(EmulatorError, match="out of bounds"):
            node.run([table, np.array([bad], dtype=np.int64)])


def test_ids_outside_the_table_are_refused_end_to_end() -> None:
    net, ids = _lookup(64)
    prog = rdu_compiler.compile(net, (ids,), fabric="sn40l-node8", tp=2)
    bad = ids.clone()
    bad[0, 3] = 64
    with pytest.raises(EmulatorError, match="the emulator refuses the run"):
        prog.run(bad)


def test_vocabulary_tp_does_not_divide_stays_replicated_with_a_note() -> None:
    net, ids = _lookup(63)  # 63 = 3 x 21: not a multiple of 2
    prog = rdu_compiler.compile(net, (ids,), fabric="sn40l-node8", tp=2)
    shard = dict(zip(prog.imported.arg_names, arg_shards(_fn(prog)), strict=True))
    assert shard["p_emb_weight"] is None
    (note,) = prog.report["tp_notes"]
    assert "63 rows kept replicated" in note and "tp = 2" in note
    with torch.no_grad():
        eager = net(ids).numpy()
    np.testing.assert_allclose(prog.run(ids).numpy(), eager, rtol=1e-5, atol=1e-6)
    assert [c["op"] for c in prog.report["collectives"]] == ["rdu.all_gather"]  # no all-reduce of the lookup


def _report(imported: Any, tp: int, vocab: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The program of `imported` at tp with the embedding split (vocab) or replicated
    (`rdu-shard{vocab=false}`, the layout before)."""
    import rdu_compiler.api as api

    original = api.pipeline

    def with_option(*args: Any, **kwargs: Any) -> list[str]:
        flag = "true" if vocab else "false"
        return [p.replace("rdu-shard{", f"rdu-shard{{vocab={flag} ") for p in original(*args, **kwargs)]

    with monkeypatch.context() as m:
        m.setattr(api, "pipeline", with_option)
        return compile_imported(imported, "sn40l-node8", 1, tp=tp)


def _arg_bytes(program: Any) -> int:
    """Bytes of one socket's arguments (weights and inputs, all resident in HBM)."""
    return sum(int(np.prod(rdu.shape_of(a.type))) * 4 for a in _fn(program).body.block.args)


def test_report_shows_the_hbm_drop_and_the_extra_all_reduce(monkeypatch: pytest.MonkeyPatch) -> None:
    """Llama 2-layer (vocab 512, hidden 64, f32: a 128 KiB table) at tp = 2: each socket
    holds half the table (64 KiB less HBM at the peak, all weights being resident), and the
    call pays one more all-reduce, of the [1, 16, 64] embeddings."""
    from rdu_compiler.frontend.torch.model_file import load_model_file

    net, inputs = load_model_file(str(EXAMPLES / "llama_2layer.py"))
    imported = import_model(net, inputs)
    split_prog = _report(imported, 2, True, monkeypatch)
    whole_prog = _report(imported, 2, False, monkeypatch)
    split, whole = split_prog.report, whole_prog.report
    table = 512 * 64 * 4
    assert _arg_bytes(whole_prog) - _arg_bytes(split_prog) == table // 2  # half the table per socket
    drop = whole["totals"]["hbm_peak_bytes"] - split["totals"]["hbm_peak_bytes"]
    assert drop >= table // 2  # the footprint the report shows drops at least by that
    extra = [c for c in split["collectives"] if c not in whole["collectives"]]
    assert len(split["collectives"]) == len(whole["collectives"]) + 1
    assert split["collectives"][0]["op"] == "rdu.all_reduce" and split["collectives"][0]["bytes_per_socket"] == 16 * 64 * 4
    assert extra and split["totals"]["collectives_s"] > whole["totals"]["collectives_s"]
    one = compile_imported(imported, "sn40l-node8", 1)
    assert one.report["totals"]["hbm_peak_bytes"] > split["totals"]["hbm_peak_bytes"]
