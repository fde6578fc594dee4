"""`RowGroup`: elementwise kernels and row reductions over the same rows (softmax, layer
norm, RMS norm, their elementwise producers and consumers). A program owns `BLOCK_M`
whole rows of `N` elements; reductions collapse a row to one value per row, later
members read it broadcast. Without a reduction it is a flat elementwise kernel.

Membership is decided on linear positions: a member may read a value of the group only
where its access pattern, as a linear form over its loops, is the value's row-major
position (or the row's position, for per-row values). Reshapes between kernels keep
row-major positions, so they do not block fusion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from xdsl.ir import SSAValue

from rdu_compiler.dialects import rdu
from rdu_compiler.runtime.triton.exprs import (
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
    Member,
    _acc_type,
    _alias_internal,
    _as_tensor,
    _cfg,
    _combine_init,
    _describe,
    _doc,
    _neutral,
    _payload,
    _reduce,
    _render,
)
from rdu_compiler.runtime.triton.program import KernelInfo, linear_coeffs, row_major


@dataclass
class RowGroup:
    """Elementwise kernels and whole-row reductions over `rows` rows of `n` elements.

    `n` is None until a reduction joins (a flat elementwise kernel over `numel` points).
    `values` maps each group value (and each reshape of one) to its kind.
    """

    numel: int
    n: int | None = None
    members: list[Member] = field(default_factory=list)
    values: dict[SSAValue, str] = field(default_factory=dict)
    aliases: dict[SSAValue, SSAValue] = field(default_factory=dict)  # reshape -> its source

    @property
    def rows(self) -> int:
        return self.numel // (self.n or 1)

    @property
    def anchor(self) -> KernelInfo:
        return self.members[0].info


def _split_ok(domain: tuple[int, ...], n: int) -> bool:
    """Every loop of size > 1 lies wholly in the row part or the column part at `n`."""
    for s, e in zip(row_major(domain), domain, strict=True):
        if e == 1:
            continue
        if not (s % n == 0 or (s * e <= n and n % (s * e) == 0)):
            return False
    return True


def _reads(info: KernelInfo, i: int, expect: list[int]) -> bool:
    """Operand i of `info` is read at the linear position `sum(expect[d] * i_d)` of its value."""
    shape = info.operand_shapes[i]
    coeffs, const = linear_coeffs(info.accesses[i], row_major(shape), info.rank)
    if const:
        return False
    return all(coeffs[d] == expect[d] for d in range(info.rank) if info.domain[d] > 1)


def _row_expect(info: KernelInfo) -> list[int]:
    return list(info.strides())


def _stat_expect(info: KernelInfo, n: int) -> list[int]:
    """Per-row position of each loop of a row-shaped kernel: the row part of its index."""
    return [s // n if s % n == 0 else 0 for s in info.strides()]


def reduction_shape(info: KernelInfo) -> tuple[int, int] | None:
    """(rows, n) if the reduced loops are innermost (after every parallel loop of size > 1)."""
    big_par = [d for d in info.par if info.domain[d] > 1]
    big_red = [d for d in info.red if info.domain[d] > 1]
    if big_par and big_red and max(big_par) > min(big_red):
        return None
    rows = math.prod(info.domain[d] for d in info.par)
    n = math.prod(info.domain[d] for d in info.red)
    return rows, n


def row_join(g: RowGroup, info: KernelInfo, group_reads: list[int], max_row: int) -> tuple[str, int | None] | None:
    """Whether `info` can join `g`, reading group values at operands `group_reads`:
    returns (the member kind, the group's n after joining), or None."""
    if info.kind == rdu.Pattern.SCAN or info.dot is not None:
        return None
    n = g.n
    if info.red:
        shape = reduction_shape(info)
        if shape is None or pow2_at_least(shape[1]) > max_row:
            return None
        rows, rn = shape
        if n is None:
            if rows * rn != g.numel:
                return None
            n = rn
        elif rn != n or rows != g.rows:
            return None
        kind = "row"
    elif info.numel == g.numel:
        kind = "row"
    elif n is not None and info.numel == g.rows:
        kind = "stat"
    else:
        return None
    if kind == "row" and n is not None and not _split_ok(info.domain, n):
        return None
    for i in group_reads:
        v = info.node.ins[i]
        vkind = g.values[v]
        if kind == "row" and vkind == "row":
            ok = _reads(info, i, _row_expect(info))
        elif kind == "row" and vkind == "stat":
            assert n is not None
            ok = _reads(info, i, _stat_expect(info, n))
        elif kind == "stat" and vkind == "stat":
            ok = _reads(info, i, _row_expect(info))
        else:
            ok = False
        if not ok:
            return None
    if not outputs_ok(info, n):
        return None
    return kind, n


def outputs_ok(info: KernelInfo, n: int | None) -> bool:
    """Results are written at the row-major position of the domain (maps) or of the row."""
    for j in range(info.n_init):
        i = info.n_in + j
        if info.red:
            assert n is not None
            if not _reads(info, i, _stat_expect(info, n)):
                return False
        elif not _reads(info, i, _row_expect(info)):
            return False
    return True


def emit_row_group(g: RowGroup, name: str, env: Env, out_values: list[SSAValue]) -> Launch:
    b = Builder(name, env)
    b.check_wide([m.info.node.outs[0] for m in g.members] + [v for m in g.members for v in m.info.node.ins])
    w = b.w
    two_d = g.n is not None
    base = "pid * BLOCK_M + tl.arange(0, BLOCK_M)"
    if b.wide:
        base = "pid.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)"
    w.line("pid = tl.program_id(0)")
    rows = g.rows
    n = g.n or 1
    bn = pow2_at_least(n)
    if two_d:
        w.line(f"r = ({base})[:, None]  # rows")
        w.line(f"c = tl.arange(0, {bn})[None, :]  # the whole row")
    else:
        w.line(f"r = {base}")
    w.line(f"rmask = r < {rows}")
    b.axis_mask["r"] = "rmask"
    if two_d and bn != n:
        w.line(f"cmask = c < {n}")
        b.axis_mask["c"] = "cmask"
    rc = Coord("r", rows, frozenset({"r"}))
    cc = Coord("c", n, frozenset({"c"}))
    row_coords = [(rc, n), (cc, 1)] if two_d else [(rc, 1)]
    stat_coords = [(rc, 1)]
    internal: dict[SSAValue, Internal] = {}
    producers: dict[SSAValue, tuple[KernelInfo, list[Coord], int]] = {}
    for m in g.members:
        info = m.info
        w.line(f"# {info.label}: {_describe(info)}")
        coords = row_coords if m.kind == "row" else stat_coords
        dims = b.dim_vars(coords, info.domain)
        full = b.mask(frozenset({"r", "c"}) if m.kind == "row" and two_d else frozenset({"r"}))
        _alias_internal(g, internal)
        em, yielded = _payload(b, info, dims, full, internal, include_inits=not info.red)
        if not info.red:
            for j, r in enumerate(info.results):
                val = yielded[j]
                internal[r] = Internal(val, "row" if m.kind == "row" else "stat")
                producers[r] = (info, dims, info.n_in + j)
            continue
        for j, r in enumerate(info.results):
            comb = info.combiners[j]
            if comb is None:
                continue
            cname, expr_v = comb
            elt = info.result_elts[j]
            acc_t = _acc_type(elt)
            x = em.names.get(expr_v) or em.value(expr_v)
            if acc_t != tl_dtype(elt):
                x = f"{x}.to({acc_t})"
            neutral = _neutral(cname, elt)
            lit_neutral = py_literal(neutral)
            x = f"tl.broadcast_to({x}, [BLOCK_M, {bn}])"
            if full:
                x = f"tl.where({full}, {x}, {lit_neutral})"
            red = _reduce(w, cname, x)
            res = _combine_init(b, info, j, dims, red, cname, neutral, internal, acc_t)
            if acc_t != tl_dtype(elt):
                res = w.let(f"{res}.to({tl_dtype(elt)})")
            internal[r] = Internal(res, "stat")
            producers[r] = (info, dims, info.n_in + j)
    _alias_internal(g, internal)
    for v in out_values:
        info, dims, i = producers[v]
        b.store(v, info.accesses[i].forms, dims, _as_tensor(internal[v].var, v), rows="r")
    if two_d:
        grid = f"lambda META: (triton.cdiv({rows}, META['BLOCK_M']),)"
        bm = _row_block(g, env, bn)
        cfgs = [_cfg(BLOCK_M=x, num_warps=nw) for x, nw in bm]
    else:
        grid = f"lambda META: (triton.cdiv({rows}, META['BLOCK_M']),)"
        base_block = clamp_pow2(math.prod(g.anchor.tile), 256, 2048)
        opts = [(base_block, 4), (1024, 4), (2048, 8)]
        seen: list[tuple[int, int]] = []
        for o in opts:
            o = (min(o[0], max(16, pow2_at_least(rows))), o[1])
            if o not in seen:
                seen.append(o)
        cfgs = [_cfg(BLOCK_M=x, num_warps=nw) for x, nw in seen]
    doc = _doc(g.members, "row group" if two_d else "elementwise")
    src = _render(name, b.signature(), ["BLOCK_M"], w.text(), cfgs, doc)
    return Launch(name, src, b.args, b.outputs, grid, [m.info.label for m in g.members],
                  [m.info for m in g.members], dict(g.aliases), checks=b.checks)


def _row_block(g: RowGroup, env: Env, bn: int) -> list[tuple[int, int]]:
    budget = max(1, 4096 // bn)
    anchor = g.anchor
    par_tile = math.prod(t for d, t in enumerate(anchor.tile) if d in anchor.par) if anchor.red else 1
    base = max(1, min(budget, pow2_at_least(par_tile), pow2_at_least(g.rows)))
    warps = 4 if bn * base <= 2048 else 8
    out = [(base, warps)]
    for x, nw in ((max(1, base // 2), 4), (min(budget * 2, pow2_at_least(g.rows)), 8), (1, 4 if bn <= 4096 else 8)):
        x = max(1, min(x, pow2_at_least(g.rows)))
        if (x, nw) not in out:
            out.append((x, nw))
    return out[:4]
