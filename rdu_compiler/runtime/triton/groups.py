"""Fused groups of rdu kernels and the Triton kernel each group becomes.

A group is one Triton kernel. Its members are rdu kernels (each already a fused
pipeline stage of `rdu-fuse`) whose intermediate tensors stay in registers:

- `RowGroup`: elementwise kernels and row reductions over the same rows (softmax, layer
  norm, RMS norm, their elementwise producers and consumers). A program owns `BLOCK_M`
  whole rows of `N` elements; reductions collapse a row to one value per row, later
  members read it broadcast. Without a reduction it is a flat elementwise kernel.
- `MatmulGroup`: a contraction run by `tl.dot` (matmul, batched matmul, any projection
  access pattern) with its elementwise consumers applied to the accumulator tile
  before the store (bias, activation, residual, scaling, masks).
- `LoopReduce`: one reduction the row kernel cannot hold (reduced dims not innermost,
  or rows wider than `max_row`), looping over the reduced dims.
- `ScanGroup`: a cumulative sum/product along one dim.

Membership is decided on linear positions: a member may read a value of the group only
where its access pattern, as a linear form over its loops, is the value's row-major
position (or the row's position, for per-row values). Reshapes between kernels keep
row-major positions, so they do not block fusion.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xdsl.ir import Attribute, SSAValue

from rdu_compiler.dialects import rdu
from rdu_compiler.dtypes import is_low_float
from rdu_compiler.ir import op_name
from rdu_compiler.runtime.triton.exprs import (
    ZERO,
    Coord,
    Writer,
    address,
    clamp_pow2,
    literal,
    pow2_at_least,
    py_literal,
    tl_dtype,
)
from rdu_compiler.runtime.triton.payload import Capture, PayloadContext, PayloadEmitter
from rdu_compiler.runtime.triton.program import KernelInfo, fail, linear_coeffs, row_major

Layout = tuple[tuple[int, ...], tuple[int, ...]]  # shape, strides (elements)


# --------------------------------------------------------------------------- combiners

_COMBINE = {
    "arith.addf": "{a} + {b}", "arith.addi": "{a} + {b}", "arith.mulf": "{a} * {b}", "arith.muli": "{a} * {b}",
    "arith.maximumf": "tl.maximum({a}, {b}, propagate_nan=tl.PropagateNan.ALL)",
    "arith.minimumf": "tl.minimum({a}, {b}, propagate_nan=tl.PropagateNan.ALL)",
    "arith.maxnumf": "tl.maximum({a}, {b})", "arith.minnumf": "tl.minimum({a}, {b})",
    "arith.maxsi": "tl.maximum({a}, {b})", "arith.minsi": "tl.minimum({a}, {b})",
    "arith.ori": "{a} | {b}", "arith.andi": "{a} & {b}", "arith.xori": "{a} ^ {b}",
}
# Reductions go through the core builtin tl.reduce. Sums, max and min use the combine
# functions of Triton's own tl.sum / tl.max / tl.min (resolved in the kernels.py
# preamble as _sum_fn, _max_fn, _min_fn), which the interpreter runs as numpy reductions.
_REDUCE_FN = {
    "arith.addf": "_sum_fn", "arith.addi": "_sum_fn", "arith.mulf": "_prod_fn",
    "arith.muli": "_prod_fn", "arith.maximumf": "_max_fn", "arith.maxnumf": "_max_fn",
    "arith.maxsi": "_max_fn", "arith.minimumf": "_min_fn", "arith.minnumf": "_min_fn",
    "arith.minsi": "_min_fn", "arith.ori": "_or_combine", "arith.andi": "_and_combine",
    "arith.xori": "_xor_combine",
}
_REDUCE = {k: "tl.reduce({x}, 1, " + v + ")" for k, v in _REDUCE_FN.items()}
#: combiners that propagate NaN (the max/min reductions above drop it; a NaN count restores it)
_NAN_PROPAGATING = {"arith.maximumf", "arith.minimumf"}


def _reduce(w: Writer, cname: str, x: str, stem: str = "red") -> str:
    """Reduce `x` along axis 1 with combiner `cname`; keeps the reduced axis (size 1)."""
    if cname not in _NAN_PROPAGATING:
        return w.let(_REDUCE[cname].format(x=x) + "[:, None]", stem)
    xs = w.let(x, "x")
    red = w.let(_REDUCE[cname].format(x=xs) + "[:, None]", stem)
    nans = w.let(f"tl.reduce(({xs} != {xs}).to(tl.int32), 1, _sum_fn)[:, None]", "nans")
    return w.let(f'tl.where({nans} > 0, float("nan"), {red})', stem)


def _neutral(comb: str, elt: Attribute) -> Any:
    width = getattr(getattr(elt, "width", None), "data", 64)
    if comb in ("arith.addf", "arith.addi", "arith.ori", "arith.xori"):
        return 0.0 if comb == "arith.addf" else 0
    if comb in ("arith.mulf", "arith.muli"):
        return 1.0 if comb == "arith.mulf" else 1
    if comb in ("arith.maximumf", "arith.maxnumf"):
        return float("-inf")
    if comb in ("arith.minimumf", "arith.minnumf"):
        return float("inf")
    if comb == "arith.maxsi":
        return -(1 << (width - 1)) if width > 1 else False
    if comb == "arith.minsi":
        return (1 << (width - 1)) - 1 if width > 1 else True
    if comb == "arith.andi":
        return -1 if width > 1 else True
    raise fail(f"reduction combiner '{comb}' has no Triton rule")


def _acc_type(elt: Attribute) -> str:
    """Reductions of fp16/bf16 accumulate in fp32 (as PyTorch does), others in their type."""
    return "tl.float32" if is_low_float(elt) else tl_dtype(elt)


# --------------------------------------------------------------------------- kernel builder


@dataclass
class Launch:
    """One Triton kernel and how the launcher calls it."""

    name: str
    source: str
    args: list[SSAValue]  # tensors passed, in parameter order (outputs included)
    outputs: list[SSAValue]  # tensors the launch writes (allocated before it)
    grid: str
    members: list[str]
    infos: list[KernelInfo] = field(default_factory=list)  # the rdu kernels, in order
    aliases: dict[SSAValue, SSAValue] = field(default_factory=dict)  # reshapes inside the group


@dataclass
class Env:
    """What a kernel builder asks of the generator."""

    layout: Callable[[SSAValue], Layout]
    splat: Callable[[SSAValue], tuple[Any, Attribute] | None]
    settings: Any
    #: copies (transposes, broadcasts, reshaped views of them) that are never written:
    #: value -> (the copy kernel, the input it copies); readers load that input instead
    virtual: Callable[[SSAValue], tuple[KernelInfo, int] | None] = lambda v: None


class Builder:
    """Parameters, masks, loads and stores of one kernel under construction."""

    def __init__(self, name: str, env: Env):
        self.name = name
        self.env = env
        self.w = Writer()
        self.params: list[str] = []
        self.args: list[SSAValue] = []
        self.outputs: list[SSAValue] = []
        self.ptrs: dict[SSAValue, str] = {}
        self.axis_mask: dict[str, str | None] = {}
        self.mask_cache: dict[frozenset[str], str | None] = {}
        self.wide = False

    def ptr(self, v: SSAValue, out: bool = False) -> str:
        if v in self.ptrs:
            return self.ptrs[v]
        name = f"out{len(self.outputs)}" if out else f"in{len(self.params) - len(self.outputs)}"
        self.ptrs[v] = name
        self.params.append(name)
        self.args.append(v)
        if out:
            self.outputs.append(v)
        return name

    def mask(self, axes: frozenset[str]) -> str | None:
        if axes in self.mask_cache:
            return self.mask_cache[axes]
        parts = [m for a in sorted(axes) if (m := self.axis_mask.get(a))]
        if not parts:
            result = None
        elif len(parts) == 1:
            result = parts[0]
        else:
            result = self.w.let(" & ".join(parts), "mask", share=True)
        self.mask_cache[axes] = result
        return result

    def load(self, v: SSAValue, forms: Any, dims: list[Coord], elt: Attribute) -> str:
        sp = self.env.splat(v)
        if sp is not None:
            return literal(sp[0], elt)
        virt = self.env.virtual(v)
        if virt is not None:
            return self._load_through_copy(v, forms, dims, elt, *virt)
        shape, strides = self.env.layout(v)
        p = self.ptr(v)
        addr = address(forms, dims, strides)
        m = self.mask(addr.axes)
        if addr.expr == "0":
            return self.w.let(f"tl.load({p})", "x", share=True)
        other = "" if m is None else f", mask={m}, other={'0.0' if str(elt) == 'f32' else '0'}"
        return self.w.let(f"tl.load({p} + ({addr.expr}){other})", "x", share=True)

    def _load_through_copy(self, v: SSAValue, forms: Any, dims: list[Coord], elt: Attribute,
                           copy: KernelInfo, j: int) -> str:
        """Read element `forms(dims)` of a copy kernel's result from the tensor it copies:
        the row-major position in `v` is a point of the copy's loops, read through its map."""
        from rdu_compiler.kernel.access import Access
        from rdu_compiler.runtime.triton.exprs import index_expr

        coeffs, const = linear_coeffs(Access(tuple(forms)), row_major(rdu.shape_of(v.type)), len(dims))
        coords = [(dims[d], c) for d, c in enumerate(coeffs) if c and dims[d].extent > 1]
        if const:
            coords.append((Coord(str(const), const + 1), 1))
        cdims = []
        for s, e in zip(row_major(copy.domain), copy.domain, strict=True):
            c = index_expr(coords, s, e)
            if c.extent > 1 and not c.expr.isidentifier():
                c = Coord(self.w.let(c.expr, "i", share=True), c.extent, c.axes)
            cdims.append(c)
        return self.load(copy.ins[j], copy.accesses[j].forms, cdims, elt)

    def store(self, v: SSAValue, forms: Any, dims: list[Coord], value: str, rows: str | None = None) -> None:
        """Store `value` at `forms(dims)` of `v`. `rows`: the block's row axis; an address that
        does not use it (a one-row result, e.g. 0-d) is still spread over the rows, masked, so
        that pointer and value are blocks of the same shape."""
        p = self.ptr(v, out=True)
        shape = rdu.shape_of(v.type)
        addr = address(forms, dims, row_major(shape))
        expr, axes = addr.expr, addr.axes
        if rows is not None and rows not in axes:
            expr, axes = f"{expr} + {rows} * 0", axes | {rows}
        m = self.mask(axes)
        tail = "" if m is None else f", mask={m}"
        self.w.line(f"tl.store({p} + ({expr}), {value}{tail})")

    def dim_vars(self, coords: list[tuple[Coord, int]], domain: tuple[int, ...]) -> list[Coord]:
        """Index of each loop of `domain` (row-major over the linear space of `coords`)."""
        from rdu_compiler.runtime.triton.exprs import index_expr

        out = []
        for s, e in zip(row_major(domain), domain, strict=True):
            c = index_expr(coords, s, e)
            if c.extent > 1 and not c.expr.isidentifier():
                c = Coord(self.w.let(c.expr, "i", share=True), c.extent, c.axes)
            out.append(c)
        return out

    def check_wide(self, values: list[SSAValue]) -> None:
        for v in values:
            if math.prod(rdu.shape_of(v.type)) >= 2**31 - 1:
                self.wide = True


def _render(name: str, params: list[str], constexprs: list[str], body: str, configs: list[str], doc: str) -> str:
    sig = ", ".join(params + [f"{c}: tl.constexpr" for c in constexprs])
    cfgs = ",\n        ".join(configs)
    return (
        f"@triton.autotune(\n    configs=_configs(\n        {cfgs},\n    ),\n    key=[],\n)\n"
        f"@triton.jit\ndef {name}({sig}):\n    \"\"\"{doc}\"\"\"\n{body}\n"
    )


def _cfg(**kw: int) -> str:
    warps = kw.pop("num_warps", 4)
    stages = kw.pop("num_stages", None)
    meta = ", ".join(f'"{k}": {v}' for k, v in kw.items())
    extra = f", num_stages={stages}" if stages else ""
    return f"triton.Config({{{meta}}}, num_warps={warps}{extra})"


# --------------------------------------------------------------------------- member payloads


@dataclass
class Internal:
    """A value kept in registers: its variable, and `row` (N per row) or `stat` (one per row)."""

    var: str
    kind: str  # "row" | "stat"


def _payload(b: Builder, info: KernelInfo, dims: list[Coord], full_mask: str | None,
             internal: dict[SSAValue, Internal], include_inits: bool) -> tuple[PayloadEmitter, list[str]]:
    """Emit a member's payload; its block arguments read group values, splats or memory."""
    elts = [a.type for a in info.block.args]

    def arg(i: int) -> Any:
        if i >= info.n_in + info.n_init:
            v = info.caps[i - info.n_in - info.n_init]
            shape, strides = b.env.layout(v)
            return Capture(b.ptr(v), shape, strides, rdu.element_type_of(v.type))
        is_init = i >= info.n_in
        if is_init and not include_inits:
            raise fail(f"kernel '{info.label}': the accumulator is read outside its combiner")
        v = info.ins[i] if not is_init else info.inits[i - info.n_in]
        if v in internal:
            return internal[v].var
        if b.env.splat(v) is None and is_init and _is_empty(v):
            raise fail(f"kernel '{info.label}': reads its uninitialised output tensor")
        return b.load(v, info.accesses[i].forms, dims, elts[i])

    def const_arg(i: int) -> Any:
        if i >= info.n_in + info.n_init:
            return None
        v = info.ins[i] if i < info.n_in else info.inits[i - info.n_in]
        if v in internal:
            return None
        sp = b.env.splat(v)
        return None if sp is None else sp[0]

    ctx = PayloadContext(info.label, b.w, dims, arg, full_mask, const_arg=const_arg)
    em = PayloadEmitter(ctx, info.block, info.skip)
    return em, em.run()


def _is_empty(v: SSAValue) -> bool:
    from xdsl.dialects import tensor

    return isinstance(v.owner, tensor.EmptyOp)


# --------------------------------------------------------------------------- row groups


@dataclass
class Member:
    info: KernelInfo
    kind: str  # "row" | "stat": the linear space its loops cover


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
    src = _render(name, b.params, ["BLOCK_M"], w.text(), cfgs, doc)
    return Launch(name, src, b.args, b.outputs, grid, [m.info.label for m in g.members],
                  [m.info for m in g.members], dict(g.aliases))


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


def _alias_internal(g: RowGroup | MatmulGroup, internal: dict[SSAValue, Internal]) -> None:
    """Reshapes of group values are the same registers (row-major positions are kept)."""
    for v, src in g.aliases.items():
        if src in internal and v not in internal:
            internal[v] = internal[src]


def _as_tensor(var: str, v: SSAValue) -> str:
    if var.isidentifier() and not var.startswith(("True", "False")):
        return var
    return f"tl.full([], {var}, {tl_dtype(rdu.element_type_of(v.type))})" if not var.startswith("tl.") else var


def _combine_init(b: Builder, info: KernelInfo, j: int, dims: list[Coord], red: str, cname: str,
                  neutral: Any, internal: dict[SSAValue, Internal], acc_t: str) -> str:
    """Combine a reduction with its init tensor (a folded fill constant, a group value, or memory)."""
    v = info.inits[j]
    i = info.n_in + j
    elt = info.result_elts[j]
    sp = b.env.splat(v)
    if sp is not None:
        if sp[0] == neutral or (isinstance(neutral, float) and float(sp[0]) == neutral):
            return red
        init = literal(sp[0], elt)
    elif v in internal:
        init = internal[v].var
    else:
        if _is_empty(v):
            raise fail(f"kernel '{info.label}': reduction into an uninitialised tensor")
        init = b.load(v, info.accesses[i].forms, dims, elt)
    if acc_t != tl_dtype(elt):
        init = f"{init}.to({acc_t})"
    return b.w.let(_COMBINE[cname].format(a=init, b=red), "acc")


def _describe(info: KernelInfo) -> str:
    dom = "x".join(str(d) for d in info.domain)
    if info.dot is not None:
        return f"matmul over {dom} (tl.dot)"
    if info.red:
        combs = ", ".join(c[0].split(".")[1] for c in info.combiners if c)
        return f"reduction ({combs}) over {dom}"
    return f"{info.kind.value} over {dom}"


def _doc(members: list[Member] | list[KernelInfo], what: str) -> str:
    labels = [m.info.label if isinstance(m, Member) else m.label for m in members]
    return f"{what}: " + ", ".join(labels)


# --------------------------------------------------------------------------- matmul groups


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
    widen = all(op_name(c) == "arith.extf" for c in ca + cb)
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
    src = _render(name, b.params, ["BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M"], w.text(), cfgs, doc)
    return Launch(name, src, b.args, b.outputs, grid, [a.label] + [e.label for e in g.epilogue],
                  [a, *g.epilogue], dict(g.aliases))


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


# --------------------------------------------------------------------------- looped reduction


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
    src = _render(name, b.params, ["BLOCK_P", "BLOCK_R"], w.text(), cfgs, _doc([info], "looped reduction"))
    return Launch(name, src, b.args, b.outputs, grid, [info.label], [info])


# --------------------------------------------------------------------------- scans


def emit_scan(info: KernelInfo, name: str, env: Env, max_row: int) -> Launch:
    """cumsum / cumprod along `scan_dim`: each program holds whole scan lines."""
    k = info.op
    assert k.scan_dim is not None and k.scan_inclusive is not None
    sd = k.scan_dim.value.data
    inclusive = bool(k.scan_inclusive.value.data)
    comb = info.block.last_op.operands[0].owner  # type: ignore[union-attr]
    cname = op_name(comb) if comb is not None and not isinstance(comb, type(None)) else ""
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
    src = _render(name, b.params, ["BLOCK_P"], w.text(), [_cfg(BLOCK_P=bp, num_warps=4)], _doc([info], "scan"))
    return Launch(name, src, b.args, b.outputs, grid, [info.label], [info])
