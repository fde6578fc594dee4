"""`MatmulGroup`: a contraction run by `tl.dot` (matmul, batched matmul, any projection
access pattern) with its elementwise consumers applied to the accumulator tile
before the store (bias, activation, residual, scaling, masks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from xdsl.dialects import arith
from xdsl.ir import SSAValue

from rdu_compiler.dtypes import is_low_float
from rdu_compiler.runtime.triton.exprs import (
    ZERO,
    Coord,
    clamp_pow2,
    pow2_at_least,
    py_literal,
    tl_dtype,
)
from rdu_compiler.runtime.triton.groups.common import (
    Builder,
    Env,
    Internal,
    Launch,
    _alias_internal,
    _as_tensor,
    _cfg,
    _describe,
    _doc,
    _is_empty,
    _payload,
    _render,
)
from rdu_compiler.runtime.triton.groups.rows import _reads, _row_expect, outputs_ok
from rdu_compiler.runtime.triton.program import KernelInfo, fail, row_major


@dataclass
class MatmulGroup:
    """`tl.dot` over an anchor contraction, elementwise consumers applied to the tile."""

    anchor: KernelInfo
    epilogue: list[KernelInfo] = field(default_factory=list)
    values: dict[SSAValue, str] = field(default_factory=dict)
    aliases: dict[SSAValue, SSAValue] = field(default_factory=dict)

    @property
    def numel(self) -> int:
        return math.prod(self.anchor.result_shapes[0])


def matmul_join(g: MatmulGroup, info: KernelInfo, group_reads: list[int]) -> bool:
    if not info.is_map or info.numel != g.numel:
        return False
    for i in group_reads:
        if not _reads(info, i, _row_expect(info)):
            return False
    return outputs_ok(info, None)


def emit_matmul_group(g: MatmulGroup, name: str, env: Env, out_values: list[SSAValue]) -> Launch:
    a = g.anchor
    plan = a.dot
    assert plan is not None
    b = Builder(name, env)
    b.check_wide(list(a.node.ins) + list(a.node.outs))
    w = b.w
    dom = a.domain
    size = lambda ds: math.prod(dom[d] for d in ds)  # noqa: E731
    bsz, msz, nsz, ksz = size(plan.batch), size(plan.m), size(plan.n), size(plan.k)
    w.line("pid = tl.program_id(0)")
    w.line(f"num_m = ({msz} + BLOCK_M - 1) // BLOCK_M")
    w.line(f"num_n = ({nsz} + BLOCK_N - 1) // BLOCK_N")
    w.line("width = GROUP_M * num_n  # grouped order: GROUP_M row blocks share the B tiles in L2")
    w.line("first_m = (pid // width) * GROUP_M")
    w.line("group_m = tl.minimum(num_m - first_m, GROUP_M)")
    w.line("pid_m = first_m + (pid % width) % group_m")
    w.line("pid_n = (pid % width) // group_m")
    cast64 = ".to(tl.int64)" if b.wide else ""
    w.line(f"om = (pid_m{cast64} * BLOCK_M + tl.arange(0, BLOCK_M))[:, None]")
    w.line(f"on = (pid_n{cast64} * BLOCK_N + tl.arange(0, BLOCK_N))[None, :]")
    w.line(f"mmask = om < {msz}")
    w.line(f"nmask = on < {nsz}")
    b.axis_mask.update({"m": "mmask", "n": "nmask"})
    bcoord = None
    if bsz > 1:
        w.line(f"pb = tl.program_id(1){cast64}  # batch")
        bcoord = Coord("pb", bsz)

    def role_dims(ds: list[int], coord: Coord) -> dict[int, Coord]:
        sub = tuple(dom[d] for d in ds)
        out = {}
        from rdu_compiler.runtime.triton.exprs import index_expr

        for d, s, e in zip(ds, row_major(sub), sub, strict=True):
            c = index_expr([(coord, 1)], s, e)
            if c.extent > 1 and not c.expr.isidentifier():
                c = Coord(w.let(c.expr, "i", share=True), c.extent, c.axes)
            out[d] = c
        return out

    outer: dict[int, Coord] = {}
    outer.update(role_dims(plan.m, Coord("om", msz, frozenset({"m"}))))
    outer.update(role_dims(plan.n, Coord("on", nsz, frozenset({"n"}))))
    if bcoord is not None:
        outer.update(role_dims(plan.batch, bcoord))
    for d in plan.batch:
        outer.setdefault(d, ZERO)
    acc_t = "tl.float32"
    w.line(f"acc = tl.full([BLOCK_M, BLOCK_N], 0.0, {acc_t})")
    w.line(f"for k0 in range(0, {ksz}, BLOCK_K):")
    saved = dict(w.cache)
    saved_masks = dict(b.mask_cache)
    w.indent += 1
    w.line("ka = (k0 + tl.arange(0, BLOCK_K))[None, :]")
    w.line("kb = (k0 + tl.arange(0, BLOCK_K))[:, None]")
    w.line(f"kamask = ka < {ksz}")
    w.line(f"kbmask = kb < {ksz}")
    tiles = []
    for which, kname in ((plan.a, "ka"), (plan.b, "kb")):
        dims_map = dict(outer)
        dims_map.update(role_dims(plan.k, Coord(kname, ksz, frozenset({kname}))))
        b.axis_mask[kname] = f"{kname}mask"
        dims = [dims_map.get(d, ZERO) for d in range(a.rank)]
        v = a.ins[which]
        elt = a.block.args[which].type
        sp = env.splat(v)
        if sp is not None:
            raise fail(f"kernel '{a.label}': matmul of a constant tensor is not supported by the Triton generator")
        x = b.load(v, a.accesses[which].forms, dims, elt)
        tiles.append((x, elt, a.mul_operand_chain(which)))
    mul_t = a.combiners[0][1].type  # type: ignore[index]
    (xa, ta, ca), (xb, tb, cb) = tiles
    widen = all(isinstance(c, arith.ExtFOp) for c in ca + cb)
    if str(ta) == str(tb) and is_low_float(ta) and str(mul_t) == "f32" and widen:
        # fp16/bf16 products are exact in fp32: tensor cores with fp32 accumulation compute
        # the same numbers (the interpreter has no bf16 arithmetic: it widens first)
        w.line("if _NATIVE_LOW_PRECISION_DOT:")
        w.line(f"    acc = tl.dot({xa}, {xb}, acc)")
        w.line("else:")
        w.line(f'    acc = tl.dot({xa}.to(tl.float32), {xb}.to(tl.float32), acc, input_precision="ieee")')
    else:
        ops = []
        for x, t, chain in ((xa, ta, ca), (xb, tb, cb)):
            for cast in chain:
                x = f"{x}.to({tl_dtype(cast.results[0].type)})"
                t = cast.results[0].type
            if tl_dtype(t) != tl_dtype(mul_t):
                x = f"{x}.to({tl_dtype(mul_t)})"
            ops.append(x)
        prec = f', input_precision="{env.settings.dot_precision}"' if str(mul_t) == "f32" else ""
        w.line(f"acc = tl.dot({ops[0]}, {ops[1]}, acc{prec})")
    w.indent -= 1
    w.cache = saved
    b.mask_cache = saved_masks
    for kname in ("ka", "kb"):
        b.axis_mask.pop(kname, None)
    dims = [outer.get(d, ZERO) for d in range(a.rank)]
    # the init (C in C + A @ B): a folded fill constant or a tensor
    elt = a.result_elts[0]
    v_init = a.inits[0]
    sp = env.splat(v_init)
    res = "acc"
    if sp is not None:
        if float(sp[0]) != 0.0:
            res = w.let(f"acc + {py_literal(float(sp[0]))}", "acc")
    else:
        if _is_empty(v_init):
            raise fail(f"kernel '{a.label}': matmul into an uninitialised tensor")
        init = b.load(v_init, a.accesses[a.n_in].forms, dims, elt)
        res = w.let(f"{init}.to(tl.float32) + acc", "acc")
    if tl_dtype(elt) != acc_t:
        res = w.let(f"{res}.to({tl_dtype(elt)})", "acc")
    internal: dict[SSAValue, Internal] = {a.results[0]: Internal(res, "row")}
    producers: dict[SSAValue, tuple[KernelInfo, list[Coord], int]] = {a.results[0]: (a, dims, a.n_in)}
    out_shape = a.result_shapes[0]
    coords: list[tuple[Coord, int]] = []
    for (cs, _), st in zip(a.accesses[a.n_in].forms, row_major(out_shape), strict=True):
        if any(cs):
            coords.append((dims[cs.index(1)], st))
    full = b.mask(frozenset({"m", "n"}))
    for info in g.epilogue:
        _alias_internal(g, internal)
        w.line(f"# {info.label}: {_describe(info)} (epilogue)")
        mdims = b.dim_vars(coords, info.domain)
        _, yielded = _payload(b, info, mdims, full, internal, include_inits=True)
        for j, r in enumerate(info.results):
            internal[r] = Internal(yielded[j], "row")
            producers[r] = (info, mdims, info.n_in + j)
    _alias_internal(g, internal)
    for v in out_values:
        info, pdims, i = producers[v]
        b.store(v, info.accesses[i].forms, pdims, _as_tensor(internal[v].var, v))
    grid = f"lambda META: (triton.cdiv({msz}, META['BLOCK_M']) * triton.cdiv({nsz}, META['BLOCK_N']), {bsz})"
    cfgs = _matmul_configs(a, plan, msz, nsz, ksz)
    doc = _doc([a, *g.epilogue], "matmul + epilogue" if g.epilogue else "matmul")
    src = _render(name, b.signature(), ["BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M"], w.text(), cfgs, doc)
    return Launch(name, src, b.args, b.outputs, grid, [a.label] + [e.label for e in g.epilogue],
                  [a, *g.epilogue], dict(g.aliases), checks=b.checks)


def _matmul_configs(a: KernelInfo, plan: Any, msz: int, nsz: int, ksz: int) -> list[str]:
    t = a.tile
    tm = math.prod(t[d] for d in plan.m)
    tn = math.prod(t[d] for d in plan.n)
    tk = math.prod(t[d] for d in plan.k)
    cap_m = max(16, pow2_at_least(msz))
    cap_n = max(16, pow2_at_least(nsz))
    cap_k = max(16, pow2_at_least(ksz))
    base = (min(clamp_pow2(tm, 16, 128), cap_m), min(clamp_pow2(tn, 16, 128), cap_n), min(clamp_pow2(tk, 16, 64), cap_k))
    opts = [base + (4, 3), (128, 128, 32, 8, 3), (128, 64, 32, 4, 4), (64, 128, 32, 4, 4), (64, 64, 64, 4, 3)]
    out: list[tuple[int, ...]] = []
    for bm, bn, bk, nw, ns in opts:
        o = (min(bm, cap_m), min(bn, cap_n), min(bk, cap_k), nw, ns)
        if o not in out:
            out.append(o)
    return [_cfg(BLOCK_M=o[0], BLOCK_N=o[1], BLOCK_K=o[2], GROUP_M=8, num_warps=o[3], num_stages=o[4]) for o in out[:5]]
