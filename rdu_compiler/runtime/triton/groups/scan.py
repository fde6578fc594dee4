"""`ScanGroup`: a cumulative sum/product along one dim.
"""

from __future__ import annotations

import math

from xdsl.ir import Operation

from rdu_compiler.ir import op_name
from rdu_compiler.runtime.triton.exprs import (
    ZERO,
    Coord,
    literal,
    pow2_at_least,
)
from rdu_compiler.runtime.triton.groups.common import Builder, Env, Launch, _cfg, _doc, _render
from rdu_compiler.runtime.triton.program import KernelInfo, fail, row_major


def emit_scan(info: KernelInfo, name: str, env: Env, max_row: int) -> Launch:
    """cumsum / cumprod along `scan_dim`: each program holds whole scan lines."""
    k = info.op
    assert k.scan_dim is not None and k.scan_inclusive is not None
    sd = k.scan_dim.value.data
    inclusive = bool(k.scan_inclusive.value.data)
    comb = info.block.last_op.operands[0].owner  # type: ignore[union-attr]
    cname = op_name(comb) if isinstance(comb, Operation) else ""
    if cname not in ("arith.addi", "arith.addf", "arith.muli", "arith.mulf"):
        raise fail(f"kernel '{info.label}': scan combiner '{cname}' has no Triton rule (add or mul only)")
    dom = info.domain
    s = dom[sd]
    bs = pow2_at_least(s)
    if bs > max_row:
        raise fail(f"kernel '{info.label}': a scan of {s} elements is longer than the Triton generator's max row ({max_row})")
    b = Builder(name, env)
    w = b.w
    others = [d for d in range(info.rank) if d != sd]
    np_ = math.prod(dom[d] for d in others)
    w.line("pid = tl.program_id(0)")
    w.line("p = (pid * BLOCK_P + tl.arange(0, BLOCK_P))[:, None]")
    w.line(f"pmask = p < {np_}")
    w.line(f"s = tl.arange(0, {bs})[None, :]")
    b.axis_mask["p"] = "pmask"
    if bs != s:
        w.line(f"smask = s < {s}")
        b.axis_mask["s"] = "smask"
    from rdu_compiler.runtime.triton.exprs import index_expr

    sub = tuple(dom[d] for d in others)
    dims: list[Coord] = [ZERO] * info.rank
    for d, st, e in zip(others, row_major(sub), sub, strict=True):
        c = index_expr([(Coord("p", np_, frozenset({"p"})), 1)], st, e)
        if c.extent > 1 and not c.expr.isidentifier():
            c = Coord(w.let(c.expr, "i", share=True), c.extent, c.axes)
        dims[d] = c
    dims[sd] = Coord("s", s, frozenset({"s"}))
    elt = info.result_elts[0]
    identity = 0 if cname.endswith(("addi", "addf")) else 1
    fn = "_sum_fn" if identity == 0 else "_prod_fn"
    x = b.load(info.ins[0], info.accesses[0].forms, dims, elt)
    full = b.mask(frozenset({"p", "s"}))
    ident = literal(identity, elt)
    xm = w.let(f"tl.where({full}, {x}, {ident})" if full else x, "x")
    incl = w.let(f"tl.associative_scan({xm}, 1, {fn})", "scan")
    out0 = incl
    if not inclusive:
        shifted = dims.copy()
        shifted[sd] = Coord("s1", s, frozenset({"s", "s1"}))
        w.line("s1 = s - 1")
        b.axis_mask["s1"] = "(s >= 1)"
        xs = b.load(info.ins[0], info.accesses[0].forms, shifted, elt)
        m = b.mask(frozenset({"p", "s", "s1"}))
        xs = w.let(f"tl.where({m}, {xs}, {ident})", "x")
        init_v = info.inits[1]
        init = b.load(init_v, info.accesses[info.n_in + 1].forms, dims, elt)
        out0 = w.let(f"tl.where(s == 0, {init}, tl.associative_scan({xs}, 1, {fn}))", "scan")
    if info.results[0].uses:
        b.store(info.results[0], info.accesses[info.n_in].forms, dims, out0)
    if info.n_init > 1 and info.results[1].uses:
        last = w.let(f"tl.reduce(tl.where(s == {s - 1}, {incl}, {literal(0, elt)}), 1, _sum_fn)[:, None]", "last")
        b.store(info.results[1], info.accesses[info.n_in + 1].forms, dims, last)
    grid = f"lambda META: (triton.cdiv({np_}, META['BLOCK_P']),)"
    bp = max(1, min(pow2_at_least(np_), max(1, 2048 // bs)))
    src = _render(name, b.signature(), ["BLOCK_P"], w.text(), [_cfg(BLOCK_P=bp, num_warps=4)], _doc([info], "scan"))
    return Launch(name, src, b.args, b.outputs, grid, [info.label], [info], checks=b.checks)
