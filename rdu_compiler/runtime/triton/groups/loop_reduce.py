"""`LoopReduce`: one reduction the row kernel cannot hold (reduced dims not innermost,
or rows wider than `max_row`), looping over the reduced dims.
"""

from __future__ import annotations

import math

from rdu_compiler.runtime.triton.exprs import (
    ZERO,
    Coord,
    clamp_pow2,
    pow2_at_least,
    py_literal,
    tl_dtype,
)
from rdu_compiler.runtime.triton.groups.common import (
    _COMBINE,
    Builder,
    Env,
    Launch,
    _acc_type,
    _cfg,
    _combine_init,
    _doc,
    _neutral,
    _payload,
    _reduce,
    _render,
)
from rdu_compiler.runtime.triton.program import KernelInfo, row_major


def emit_loop_reduce(info: KernelInfo, name: str, env: Env) -> Launch:
    """One reduction kernel, looping over its reduced loops in chunks of BLOCK_R."""
    b = Builder(name, env)
    b.check_wide(list(info.node.ins) + list(info.node.outs))
    w = b.w
    dom = info.domain
    par, red = list(info.par), list(info.red)
    np_ = math.prod(dom[d] for d in par)
    nr = math.prod(dom[d] for d in red)
    cast64 = ".to(tl.int64)" if b.wide else ""
    w.line("pid = tl.program_id(0)")
    w.line(f"p = (pid{cast64} * BLOCK_P + tl.arange(0, BLOCK_P))[:, None]")
    w.line(f"pmask = p < {np_}")
    b.axis_mask["p"] = "pmask"
    from rdu_compiler.runtime.triton.exprs import index_expr

    def sub_dims(ds: list[int], coord: Coord) -> dict[int, Coord]:
        sub = tuple(dom[d] for d in ds)
        out = {}
        for d, s, e in zip(ds, row_major(sub), sub, strict=True):
            c = index_expr([(coord, 1)], s, e)
            if c.extent > 1 and not c.expr.isidentifier():
                c = Coord(w.let(c.expr, "i", share=True), c.extent, c.axes)
            out[d] = c
        return out

    outer = sub_dims(par, Coord("p", np_, frozenset({"p"})))
    live = [(j, c) for j, c in enumerate(info.combiners) if c is not None]
    accs = {}
    for j, (cname, _) in live:
        elt = info.result_elts[j]
        acc_t = _acc_type(elt)
        accs[j] = w.let(f"tl.full([BLOCK_P, BLOCK_R], {py_literal(_neutral(cname, elt))}, {acc_t})", "acc")
    w.line(f"for q0 in range(0, {nr}, BLOCK_R):")
    saved, saved_masks = dict(w.cache), dict(b.mask_cache)
    w.indent += 1
    w.line("q = (q0 + tl.arange(0, BLOCK_R))[None, :]")
    w.line(f"qmask = q < {nr}")
    b.axis_mask["q"] = "qmask"
    inner = dict(outer)
    inner.update(sub_dims(red, Coord("q", nr, frozenset({"q"}))))
    dims = [inner.get(d, ZERO) for d in range(info.rank)]
    full = b.mask(frozenset({"p", "q"}))
    em, _ = _payload(b, info, dims, full, {}, include_inits=False)
    for j, (cname, expr_v) in live:
        elt = info.result_elts[j]
        acc_t = _acc_type(elt)
        x = em.value(expr_v)
        if acc_t != tl_dtype(elt):
            x = f"{x}.to({acc_t})"
        x = f"tl.where({full}, tl.broadcast_to({x}, [BLOCK_P, BLOCK_R]), {py_literal(_neutral(cname, elt))})"
        w.line(f"{accs[j]} = " + _COMBINE[cname].format(a=accs[j], b=x))
    w.indent -= 1
    w.cache, b.mask_cache = saved, saved_masks
    b.axis_mask.pop("q")
    dims = [outer.get(d, ZERO) for d in range(info.rank)]
    for j, (cname, _) in live:
        elt = info.result_elts[j]
        acc_t = _acc_type(elt)
        red_v = _reduce(w, cname, accs[j])
        res = _combine_init(b, info, j, dims, red_v, cname, _neutral(cname, elt), {}, acc_t)
        if acc_t != tl_dtype(elt):
            res = w.let(f"{res}.to({tl_dtype(elt)})")
        if info.results[j].uses:
            b.store(info.results[j], info.accesses[info.n_in + j].forms, dims, res)
    grid = f"lambda META: (triton.cdiv({np_}, META['BLOCK_P']),)"
    br = clamp_pow2(math.prod(info.tile[d] for d in red), 16, 1024)
    br = min(br, max(16, pow2_at_least(nr)))
    bp = max(1, min(pow2_at_least(np_), 4096 // br))
    cfgs = [_cfg(BLOCK_P=bp, BLOCK_R=br, num_warps=4)]
    alt = (max(1, bp // 2), min(br * 2, max(16, pow2_at_least(nr))))
    if alt != (bp, br):
        cfgs.append(_cfg(BLOCK_P=alt[0], BLOCK_R=alt[1], num_warps=8))
    src = _render(name, b.signature(), ["BLOCK_P", "BLOCK_R"], w.text(), cfgs, _doc([info], "looped reduction"))
    return Launch(name, src, b.args, b.outputs, grid, [info.label], [info], checks=b.checks)
