"""The payload of a converted kernel: a linalg (or tm_tensor) payload cloned into an
rdu payload, with the values it reads from outside made explicit (constants cloned in,
scalars at constant indices as extra inputs, function-level scalar code cloned in,
anything else a capture).

The payload is built on a clone, outside the IR being rewritten, so its ops are edited
directly (`Rewriter`), not through the pass's pattern rewriter.
"""

from __future__ import annotations

from xdsl.dialects import arith, tensor
from xdsl.dialects.builtin import (
    TensorType,
)
from xdsl.dialects.linalg import ops as linalg
from xdsl.ir import Operation, Region, SSAValue
from xdsl.ir.affine import AffineConstantExpr, AffineMap
from xdsl.rewriter import Rewriter

from rdu_compiler.dialects import rdu
from rdu_compiler.passes.convert.common import (
    constant_indices,
    is_top_level_scalar_op,
    named,
)


def build_payload(
    region: Region, n_inputs: int, n_mapped: int, rank: int, scalar_inputs: dict[int, SSAValue] | None = None
) -> tuple[Region, list[SSAValue], list[tuple[SSAValue, AffineMap]]]:
    """Clone a linalg payload into an rdu payload.

    Values from outside the payload: scalar constants are cloned in; a scalar read from a
    tensor at constant indices (`tensor.extract %t[c...]`, a 0-d tensor's value) becomes an
    extra input with a constant indexing map; scalar arith/math computed at function level
    from those is cloned in; anything else is captured whole. Returns the region, the
    captures and the extra inputs (value, map), which follow the original inputs.
    `scalar_inputs` (input index -> value): scalar inputs computed at function level; they
    are computed in the payload instead and their block arguments removed.
    """
    new_region = region.clone()
    block = new_region.block
    anchor = block.first_op
    inside: set[SSAValue] = set(block.args)
    for inner in block.walk():
        inside.update(inner.results)
    captures: list[SSAValue] = []
    extra: list[tuple[SSAValue, AffineMap]] = []
    mapping: dict[SSAValue, SSAValue] = {}

    def insert(new_op: Operation) -> None:
        if anchor is None:
            block.add_op(new_op)
        else:
            block.insert_op_before(new_op, anchor)

    def materialize(value: SSAValue) -> SSAValue:
        if value in mapping:
            return mapping[value]
        owner = value.owner
        result: SSAValue
        if isinstance(owner, arith.ConstantOp) and not isinstance(value.type, TensorType):
            const = owner.clone()
            insert(const)
            result = const.results[0]
        elif isinstance(owner, tensor.ExtractOp) and constant_indices(owner) is not None:
            indices = constant_indices(owner) or []
            source = owner.operands[0]
            amap = AffineMap(rank, 0, tuple(AffineConstantExpr(i) for i in indices))
            key = next((k for k, (v, mp) in enumerate(extra) if v is source and mp == amap), None)
            if key is None:
                key = len(extra)
                extra.append((source, amap))
                block.insert_arg(value.type, n_inputs + key)
            result = block.args[n_inputs + key]
        elif isinstance(owner, Operation) and is_top_level_scalar_op(owner) and not isinstance(owner, tensor.ExtractOp):
            new_operands = [materialize(v) for v in owner.operands]
            clone = owner.clone()
            for i, v in enumerate(new_operands):
                clone.operands[i] = v
            insert(clone)
            result = clone.results[0]
        else:
            if value not in captures:
                captures.append(value)
                block.insert_arg(value.type, len(block.args))
            result = block.args[len(block.args) - len(captures) + captures.index(value)]
        mapping[value] = result
        return result

    for inner in list(block.walk()):
        for i, operand in enumerate(inner.operands):
            if operand in inside or operand in mapping.values():
                continue
            inner.operands[i] = materialize(operand)
    replaced = [(block.args[i], materialize(v)) for i, v in sorted((scalar_inputs or {}).items())]
    for arg, value in reversed(replaced):
        arg.replace_all_uses_with(value)
        block.erase_arg(arg)
    for inner in list(block.walk()):
        if isinstance(inner, linalg.IndexOp):
            Rewriter.replace_op(inner, rdu.IndexOp(inner.dim.value.data))
        elif isinstance(inner, linalg.YieldOp) or named(inner, "tm_tensor.yield"):
            Rewriter.replace_op(inner, rdu.YieldOp(*inner.operands))
    return new_region, captures, extra

