"""Fused groups of rdu kernels and the Triton kernel each group becomes.

Shared pieces of the fused-group generators: the kernel builder, launches, combiners
and payload emission (one module per generator: rows, matmul, loop_reduce, scan).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xdsl.ir import Attribute, SSAValue

from rdu_compiler.dialects import rdu
from rdu_compiler.dtypes import is_low_float
from rdu_compiler.runtime.triton.exprs import (
    Coord,
    Writer,
    address,
    literal,
    tl_dtype,
)
from rdu_compiler.runtime.triton.payload import Capture, PayloadContext, PayloadEmitter
from rdu_compiler.runtime.triton.program import KernelInfo, fail, linear_coeffs, row_major

if TYPE_CHECKING:
    from rdu_compiler.runtime.triton.groups.matmul import MatmulGroup
    from rdu_compiler.runtime.triton.groups.rows import RowGroup


Layout = tuple[tuple[int, ...], tuple[int, ...]]  # shape, strides (elements)


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
    #: messages of the kernel's runtime checks (`Builder.check`): the launcher passes an
    #: int32 flag tensor of this length as the last argument and raises the first set one
    checks: list[tuple[str, str]] = field(default_factory=list)  # (payload op, message)


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
        self.checks: list[tuple[str, str]] = []  # (payload op, message)

    def check(self, cond: str, message: str, op: str) -> None:
        """A runtime check: lanes (within the current mask) where `cond` is false set flag
        `len(checks)` in the kernel's `chk` tensor; the launcher raises `message` after the
        run (`Launch.checks`). A flag store, not `tl.device_assert`: Triton drops device
        asserts unless built with debug (always, in its interpreter), and on a GPU a failed
        one poisons the CUDA context."""
        k = len(self.checks)
        self.checks.append((op, message))
        bad = self.w.let(f"~({cond})", "bad")
        self.w.line(f"tl.store(chk + {k} + {bad}.to(tl.int32) * 0, 1, mask={bad})")

    def signature(self) -> list[str]:
        """The kernel's pointer parameters: `params`, then `chk` when it has checks."""
        return self.params + (["chk"] if self.checks else [])

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
        # a kernel with runtime checks is compiled with debug=True: without it a GPU build
        # drops tl.device_assert (the interpreter always checks)
        f"@triton.jit\ndef {name}({sig}):\n    \"\"\"{doc}\"\"\"\n{body}\n"
    )


def _cfg(**kw: int) -> str:
    warps = kw.pop("num_warps", 4)
    stages = kw.pop("num_stages", None)
    meta = ", ".join(f'"{k}": {v}' for k, v in kw.items())
    extra = f", num_stages={stages}" if stages else ""
    return f"triton.Config({{{meta}}}, num_warps={warps}{extra})"


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

    def check(cond: str, message: str, op: str) -> None:
        b.check(f"({cond}) | ~({full_mask})" if full_mask else cond, message, op)

    ctx = PayloadContext(info.label, b.w, dims, arg, full_mask, const_arg=const_arg, check=check)
    em = PayloadEmitter(ctx, info.block, info.skip)
    return em, em.run()


def _is_empty(v: SSAValue) -> bool:
    from xdsl.dialects import tensor

    return isinstance(v.owner, tensor.EmptyOp)


@dataclass
class Member:
    info: KernelInfo
    kind: str  # "row" | "stat": the linear space its loops cover


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
