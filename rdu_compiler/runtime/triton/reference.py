"""PyTorch references for generated Triton kernels: their rdu kernels run op by op.

`GroupReference(source, launch)` computes what one generated Triton kernel computes, with
PyTorch operators, one rdu kernel after the other: elementwise payloads as torch ops on
broadcast views of the operands, reductions as torch reductions, matmuls as einsum (fp16 /
bf16 operands stay in their type, as eager PyTorch runs them). That is the unfused eager
version of the same piece of the model; `torch.compile` of it is what inductor does with
the same subgraph. `benchmarks/triton_vs_torch.py` times the three side by side.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from xdsl.dialects import arith, cf, tensor
from xdsl.dialects import math as xmath
from xdsl.dialects.builtin import FloatAttr, IntegerAttr
from xdsl.ir import Operation, SSAValue

from rdu_compiler.dialects import rdu
from rdu_compiler.dtypes import to_numpy, to_torch, torch_dtype
from rdu_compiler.interpreters.payload import PAYLOAD_OPS, OpKey, evaluate_op, op_key
from rdu_compiler.ir import op_name
from rdu_compiler.runtime.triton.generate import TritonSource
from rdu_compiler.runtime.triton.groups.common import Launch
from rdu_compiler.runtime.triton.program import KernelInfo, fail

_BIN: dict[OpKey, Callable[[Any, Any], Any]] = {
    arith.AddfOp: torch.add, arith.SubfOp: torch.sub, arith.MulfOp: torch.mul, arith.DivfOp: torch.div,
    arith.AddiOp: torch.add, arith.SubiOp: torch.sub, arith.MuliOp: torch.mul,
    arith.DivSIOp: lambda a, b: torch.div(a, b, rounding_mode="trunc"), arith.RemSIOp: torch.fmod,
    arith.FloorDivSIOp: lambda a, b: torch.div(a, b, rounding_mode="floor"), "arith.remf": torch.fmod,
    arith.MaximumfOp: torch.maximum, arith.MinimumfOp: torch.minimum, arith.MaxnumfOp: torch.fmax,
    arith.MinnumfOp: torch.fmin, arith.MaxSIOp: torch.maximum, arith.MinSIOp: torch.minimum,
    arith.AndIOp: torch.bitwise_and, arith.OrIOp: torch.bitwise_or, arith.XOrIOp: torch.bitwise_xor,
    arith.ShLIOp: torch.bitwise_left_shift, arith.ShRSIOp: torch.bitwise_right_shift, xmath.PowFOp: torch.pow,
}
_UN: dict[OpKey, Callable[[Any], Any]] = {
    arith.NegfOp: torch.neg, xmath.ExpOp: torch.exp, xmath.Exp2Op: torch.exp2, xmath.ExpM1Op: torch.expm1,
    xmath.LogOp: torch.log, xmath.Log2Op: torch.log2, xmath.Log10Op: torch.log10, xmath.Log1pOp: torch.log1p,
    xmath.TanhOp: torch.tanh, xmath.SqrtOp: torch.sqrt, xmath.RsqrtOp: torch.rsqrt, xmath.AbsFOp: torch.abs,
    xmath.AbsIOp: torch.abs, xmath.ErfOp: torch.erf, xmath.SinOp: torch.sin, xmath.CosOp: torch.cos,
    xmath.TanOp: torch.tan, xmath.CeilOp: torch.ceil, xmath.FloorOp: torch.floor, xmath.RoundEvenOp: torch.round,
    xmath.TruncOp: torch.trunc, "math.sigmoid": torch.sigmoid, xmath.SinhOp: torch.sinh, xmath.CoshOp: torch.cosh,
}
#: Casts torch's `.to` does with MLIR's meaning (the unsigned ones go through `_via_numpy`).
_CASTS: set[OpKey] = {
    arith.ExtFOp, arith.TruncFOp, arith.SIToFPOp, arith.FPToSIOp, arith.IndexCastOp, arith.ExtSIOp,
    arith.TruncIOp,
}
_CMPF: list[Callable[[Any, Any], Any]] = [
    lambda a, b: torch.zeros_like(a, dtype=torch.bool), torch.eq, torch.gt, torch.ge, torch.lt, torch.le,
    lambda a, b: (a != b) & ~a.isnan() & ~b.isnan(), lambda a, b: ~a.isnan() & ~b.isnan(),
    lambda a, b: (a == b) | a.isnan() | b.isnan(), lambda a, b: ~(a <= b), lambda a, b: ~(a < b),
    lambda a, b: ~(a >= b), lambda a, b: ~(a > b), torch.ne, lambda a, b: a.isnan() | b.isnan(),
    lambda a, b: torch.ones_like(a, dtype=torch.bool),
]
_CMPI: list[Callable[[Any, Any], Any]] = [torch.eq, torch.ne, torch.lt, torch.le, torch.gt, torch.ge]
_REDUCE = {
    "arith.addf": lambda x, d: x.sum(d, keepdim=True), "arith.addi": lambda x, d: x.sum(d, keepdim=True),
    "arith.mulf": lambda x, d: _prod(x, d), "arith.muli": lambda x, d: _prod(x, d),
    "arith.maximumf": lambda x, d: x.amax(d, keepdim=True), "arith.maxnumf": lambda x, d: _num_reduce(x, d, True),
    "arith.maxsi": lambda x, d: x.amax(d, keepdim=True), "arith.minimumf": lambda x, d: x.amin(d, keepdim=True),
    "arith.minnumf": lambda x, d: _num_reduce(x, d, False), "arith.minsi": lambda x, d: x.amin(d, keepdim=True),
}


def _num_reduce(x: torch.Tensor, dims: tuple[int, ...], is_max: bool) -> torch.Tensor:
    """maxnumf / minnumf over `dims`: NaN ignored (NaN only where every value is NaN), unlike
    amax / amin (maximumf / minimumf), which propagate it."""
    if not x.dtype.is_floating_point:
        return x.amax(dims, keepdim=True) if is_max else x.amin(dims, keepdim=True)
    nan = x.isnan()
    fill = torch.tensor(float("-inf") if is_max else float("inf"), dtype=x.dtype, device=x.device)
    y = torch.where(nan, fill, x)
    y = y.amax(dims, keepdim=True) if is_max else y.amin(dims, keepdim=True)
    return torch.where(nan.all(dims, keepdim=True) if dims else nan, x.new_tensor(float("nan")), y)


def _prod(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    for d in dims:
        x = x.prod(d, keepdim=True)
    return x


def _view(t: torch.Tensor, forms: Any, domain: tuple[int, ...]) -> torch.Tensor:
    """The operand's values broadcastable to the iteration domain (strided views for projections)."""
    rank = len(domain)
    if not forms:
        return t.reshape((1,) * rank)
    loops = [next((d for d, c in enumerate(cs) if c), None) for cs, _ in forms]
    projection = all(
        (sum(1 for c in cs if c) == 0) or (sum(1 for c in cs if c) == 1 and max(cs) == 1) for cs, _ in forms
    )
    if projection and len({d for d in loops if d is not None}) == sum(d is not None for d in loops):
        index: list[Any] = []
        kept: list[int] = []
        for (_cs, c0), d in zip(forms, loops, strict=True):
            if d is None:
                index.append(c0)
            else:
                index.append(slice(c0, c0 + domain[d]))
                kept.append(d)
        v = t[tuple(index)]
        order = sorted(range(len(kept)), key=lambda i: kept[i])
        v = v.permute(order) if order != list(range(len(kept))) else v
        return v.reshape([domain[d] if d in kept else 1 for d in range(rank)])
    grids = [torch.arange(n, device=t.device).reshape([n if i == d else 1 for i in range(rank)]) for d, n in enumerate(domain)]
    idx = [c0 + sum(c * grids[d] for d, c in enumerate(cs) if c) for cs, c0 in forms]
    idx = [i if isinstance(i, torch.Tensor) else torch.tensor(i, device=t.device) for i in idx]
    return t[tuple(torch.broadcast_tensors(*idx))]


def _write(val: torch.Tensor, forms: Any, domain: tuple[int, ...], red: tuple[int, ...], shape: tuple[int, ...]) -> torch.Tensor:
    """A domain-shaped result (reduced loops of size 1) laid out through its projection map."""
    full = [1 if d in red else n for d, n in enumerate(domain)]
    kept = [next(d for d, c in enumerate(cs) if c) for cs, _ in forms if any(cs)]
    order = sorted(kept)
    v = val.expand(full).reshape([full[d] for d in order])  # loops not written have size 1
    if kept != order:
        v = v.permute([order.index(d) for d in kept])
    return v.reshape(shape)


class GroupReference:
    """The generated kernel `launch` as PyTorch ops: `ref(*inputs) -> outputs` (tensors in
    the order of `launch.args` without / of `launch.outputs`)."""

    def __init__(self, source: TritonSource, launch: Launch):
        self.source = source
        self.launch = launch
        outs = set(launch.outputs)
        self.inputs = [v for v in launch.args if v not in outs]

    def __call__(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        env: dict[SSAValue, torch.Tensor] = dict(zip(self.inputs, tensors, strict=True))
        device = tensors[0].device if tensors else torch.device("cpu")
        for info in self.launch.infos:
            self._kernel(info, env, device)
            for alias, src in self.launch.aliases.items():
                if src in env and alias not in env:
                    env[alias] = env[src].reshape(rdu.shape_of(alias.type))
        return [env[v] for v in self.launch.outputs]

    def _value(self, v: SSAValue, env: dict[SSAValue, torch.Tensor], device: torch.device) -> torch.Tensor:
        if v in env:
            return env[v]
        if v in self.launch.aliases:
            t = self._value(self.launch.aliases[v], env, device).reshape(rdu.shape_of(v.type))
        elif v in self.source.splats:
            value, elt = self.source.splats[v]
            t = torch.full(rdu.shape_of(v.type), value, dtype=torch_dtype(elt), device=device)
        elif isinstance(v.owner, tensor.EmptyOp):  # an output-shape carrier, never read
            t = torch.empty(rdu.shape_of(v.type), dtype=torch_dtype(rdu.element_type_of(v.type)), device=device)
        elif v in self.source.virtual:
            copy, _ = self.source.virtual[v]
            if copy.results[0] not in env:
                self._kernel(copy, env, device)
            t = env[copy.results[0]].reshape(rdu.shape_of(v.type))
        else:
            raise fail(f"reference: value {v} of kernel '{self.launch.name}' is not available")
        env[v] = t
        return t

    def _kernel(self, info: KernelInfo, env: dict[SSAValue, torch.Tensor], device: torch.device) -> None:
        if info.kind == rdu.Pattern.SCAN:
            self._scan(info, env, device)
            return
        dom = info.domain
        ops = [self._value(v, env, device) for v in info.node.ins]
        if info.dot is not None:
            self._einsum(info, ops, env)
            return
        args: dict[SSAValue, Any] = {}
        for i in range(info.n_in + info.n_init):
            if info.used[i] and not (i >= info.n_in and info.red):
                args[info.block.args[i]] = _view(ops[i], info.accesses[i].forms, dom)
        for i in range(info.n_cap):
            args[info.block.args[info.n_in + info.n_init + i]] = ops[info.n_in + info.n_init + i]
        vals = self._payload(info, args, device)
        yielded = info.block.last_op.operands  # type: ignore[union-attr]
        for j, r in enumerate(info.results):
            if info.red:
                comb = info.combiners[j]
                if comb is None:
                    continue
                cname, expr = comb
                x = vals[expr].expand(dom) if isinstance(vals[expr], torch.Tensor) else torch.full(dom, vals[expr], device=device)
                part = _REDUCE[cname](x, info.red)
                init = _view(ops[info.n_in + j], info.accesses[info.n_in + j].forms, dom)
                val = _BIN[cname](init, part)
            else:
                val = vals[yielded[j]]
                if not isinstance(val, torch.Tensor):
                    val = torch.tensor(val, device=device)
            val = val.to(torch_dtype(info.result_elts[j]))
            env[r] = _write(val, info.accesses[info.n_in + j].forms, dom, info.red, info.result_shapes[j])

    def _einsum(self, info: KernelInfo, ops: list[torch.Tensor], env: dict[SSAValue, torch.Tensor]) -> None:
        plan = info.dot
        assert plan is not None
        dom = info.domain
        letters = "abcdefghijklmnopqrstuvwxyz"
        terms = []
        for which in (plan.a, plan.b):
            acc = info.accesses[which]
            v = _view(ops[which], acc.forms, dom)
            dims = sorted(acc.dims)
            v = v.reshape([dom[d] for d in dims])
            chain = info.mul_operand_chain(which)
            if chain and not all(isinstance(c, arith.ExtFOp) for c in chain):
                for c in chain:
                    v = v.to(torch_dtype(c.results[0].type))
            terms.append((v, "".join(letters[d] for d in dims)))
        out = info.accesses[info.n_in]
        odims = sorted(out.dims)
        (a, la), (b, lb) = terms
        if a.dtype != b.dtype:
            a, b = a.float(), b.float()
        prod = torch.einsum(f"{la},{lb}->{''.join(letters[d] for d in odims)}", a, b)
        elt = torch_dtype(info.result_elts[0])
        full = [dom[d] if d in odims else 1 for d in range(len(dom))]
        res = _write(prod.reshape(full).to(elt), out.forms, dom, info.red, info.result_shapes[0])
        splat = self.source.splats.get(info.inits[0])
        if splat is None or float(splat[0]) != 0.0:
            res = res + ops[info.n_in].to(elt)
        env[info.results[0]] = res

    def _scan(self, info: KernelInfo, env: dict[SSAValue, torch.Tensor], device: torch.device) -> None:
        k = info.op
        assert k.scan_dim is not None
        x = self._value(info.ins[0], env, device)
        comb = op_name(info.block.last_op.operands[0].owner)  # type: ignore[union-attr, arg-type]
        fn = torch.cumsum if comb.startswith("arith.add") else torch.cumprod
        out = fn(x, dim=k.scan_dim.value.data).to(torch_dtype(info.result_elts[0]))
        env[info.results[0]] = out
        if info.n_init > 1:
            env[info.results[1]] = out.select(k.scan_dim.value.data, -1).reshape(info.result_shapes[1])

    def _payload(self, info: KernelInfo, args: dict[SSAValue, Any], device: torch.device) -> dict[SSAValue, Any]:
        vals = dict(args)
        dom = info.domain
        for op in info.block.ops:
            if isinstance(op, rdu.YieldOp) or op in info.skip:
                continue
            out = torch_op(op, vals, dom, device)
            if op.results:
                vals[op.results[0]] = out
        return vals


def torch_op(op: Operation, vals: dict[SSAValue, Any], dom: tuple[int, ...], device: torch.device) -> Any:
    """One payload op on torch tensors (`vals`: SSA value -> tensor; `dom`: the iteration
    domain sizes). Ops without a torch operator of the same meaning use the emulator's
    numpy rule (`_via_numpy`), so this accepts exactly `interpreters.payload.PAYLOAD_OPS`.

    Raises:
        CompileError: an op with no rule.
    """
    name = op_name(op)
    ins: list[Any] = [vals.get(v) for v in op.operands]
    if isinstance(op, cf.AssertOp):
        return None
    t = op.results[0].type
    if isinstance(op, arith.ConstantOp):
        attr = op.properties["value"]
        assert isinstance(attr, FloatAttr | IntegerAttr)
        return torch.tensor(attr.value.data, dtype=torch_dtype(t), device=device)
    key = op_key(op)
    if key in _BIN:
        return _BIN[key](*ins)
    if key in _UN:
        return _UN[key](ins[0])
    if key in _CASTS:
        return torch.as_tensor(ins[0], device=device).to(torch_dtype(t))
    if isinstance(op, arith.CmpfOp | arith.CmpiOp):
        pred = op.properties["predicate"]
        assert isinstance(pred, IntegerAttr)
        table = _CMPF if isinstance(op, arith.CmpfOp) else _CMPI
        if pred.value.data < len(table):
            return table[pred.value.data](*ins)
    if isinstance(op, arith.SelectOp):
        return torch.where(*ins)
    if isinstance(op, xmath.FPowIOp):
        n = int(ins[1])
        if 1 <= n <= 4:
            y = ins[0]
            for _ in range(n - 1):
                y = y * ins[0]
            return y
        return torch.pow(ins[0], n)
    if isinstance(op, rdu.IndexOp):
        d = op.properties["dim"]
        assert isinstance(d, IntegerAttr)
        dim = d.value.data
        return torch.arange(dom[dim], device=device).reshape([dom[dim] if i == dim else 1 for i in range(len(dom))])
    if isinstance(op, tensor.ExtractOp):
        table, *idx = ins
        return table[tuple(torch.broadcast_tensors(*[torch.as_tensor(i, device=device).long() for i in idx]))]
    if key in PAYLOAD_OPS:  # no torch operator of the same meaning: the emulator's rule
        return _via_numpy(op, ins, device)
    raise fail(f"reference: payload op '{name}' has no torch rule")


def _via_numpy(op: Operation, ins: list[Any], device: torch.device) -> torch.Tensor:
    """`op` on `ins` with the emulator's numpy rule (`interpreters.payload.evaluate_op`),
    for the ops torch has no operator of the same meaning for (unsigned integer ops and
    compares, math.round's ties away from zero, bitcasts, ...)."""
    import numpy as np

    args = [to_numpy(torch.as_tensor(x)) for x in ins]
    with np.errstate(all="ignore"):
        out = np.asarray(evaluate_op(op, args))
    return to_torch(out).to(device)


def numel(v: SSAValue) -> int:
    return math.prod(rdu.shape_of(v.type))
