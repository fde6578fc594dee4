"""rdu-fold-constants: evaluate the function-level ops whose operands are all constants.

torch-mlir guards shapes with chains of scalar code on constants (`tensor.concat` of
constants -> `tensor.extract_slice` -> `tensor.extract` -> `arith.cmpi` -> `cf.assert`)
and computes scalars at function level. This pass evaluates them with the payload
semantics of the emulator (`interpreters.payload.evaluate_op`; layout ops with numpy)
and replaces each by an `arith.constant` in its place:

- Only the *scalar side* is folded: scalar ops, checks, and the tensor ops
  (`tensor.concat`, `extract_slice`, `collapse_shape`, `expand_shape`, `extract`) whose
  every use is on the scalar side. A constant tensor a kernel reads stays as it is.
- A folded tensor of more than 4096 elements, or with a zero-size dimension, stays
  computation (`rdu-convert-linalg` refuses an empty tensor by the op that makes it).
- A check (`cf.assert`) whose condition folds to false for every input is an error; one
  that holds keeps its (now constant) condition and is erased by `rdu-convert-linalg`
  with the other trivially true checks. No op is erased here, so every op keeps its
  position in the function: `rdu-convert-linalg` names kernels and refusals by the
  position of their op in the imported program ("op #7", `k7_map`), which the driver
  maps back to the model line.

This is a forward dataflow over the function: the scalar side is a global analysis (it
follows uses backwards), the folding one pattern (`FoldScalarOp`) applied by a single
forward walk, which sees every operand before its users.

    rdu-opt -p rdu-fold-constants in.mlir

Raises:
    CompileError: a check fails for every input (naming the op and its message).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.context import Context
from xdsl.dialects import arith, cf, func, tensor
from xdsl.dialects.builtin import (
    DenseIntOrFPElementsAttr,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    ModuleOp,
    TensorType,
)
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter, PatternRewriteWalker, RewritePattern

from rdu_compiler.dialects import rdu
from rdu_compiler.dtypes import numpy_dtype
from rdu_compiler.errors import CompileError
from rdu_compiler.interpreters.payload import evaluate_op
from rdu_compiler.passes.common import functions
from rdu_compiler.passes.convert.common import DropTrunciOverflowFlags, is_top_level_scalar_op

#: Function-level tensor ops evaluated when every operand is a constant (shape checks).
FOLDABLE_TENSOR_OPS = (tensor.ConcatOp, tensor.ExtractSliceOp, tensor.CollapseShapeOp, tensor.ExpandShapeOp, tensor.ExtractOp)
#: A folded tensor larger than this (elements) stays computation.
FOLD_MAX_ELEMENTS = 4096


def constant_array(op: arith.ConstantOp) -> np.ndarray | None:
    """The value of a scalar or dense tensor constant as numpy (a splat stays one element,
    broadcast read-only), or None for an attribute this does not read."""
    t = op.results[0].type
    value = op.value
    try:
        if isinstance(t, TensorType):
            if not isinstance(value, DenseIntOrFPElementsAttr):
                return None
            dtype = numpy_dtype(t.element_type)
            shape = rdu.shape_of(t)
            data = np.asarray(value.get_values(), dtype=dtype).reshape(-1)
            # a splat stays one element (a read-only broadcast view), never materialised
            return np.broadcast_to(data[0], shape) if data.size == 1 else data.reshape(shape)
        if isinstance(value, FloatAttr | IntegerAttr):
            return np.asarray(value.value.data, dtype=numpy_dtype(t))
    except Exception:  # noqa: BLE001 - an attribute we do not read: not folded
        return None
    return None


def constant_op(value: np.ndarray, t: Attribute) -> arith.ConstantOp:
    """An `arith.constant` of type `t` holding `value`."""
    elt = t.element_type if isinstance(t, TensorType) else t
    flat = np.asarray(value).reshape(-1)
    if isinstance(elt, IntegerType | IndexType):
        items: list[Any] = [int(x) for x in flat.astype(np.int64)]
        if isinstance(elt, IntegerType) and elt.width.data == 1:
            items = [1 if x else 0 for x in items]
    else:
        items = [float(x) for x in flat.astype(np.float64)]
    if isinstance(t, TensorType):
        return arith.ConstantOp(DenseIntOrFPElementsAttr.from_list(t, items))
    if isinstance(elt, IntegerType | IndexType):
        return arith.ConstantOp(IntegerAttr(items[0], elt))
    return arith.ConstantOp(FloatAttr(items[0], elt))  # type: ignore[arg-type]


def fold_one(op: Operation, args: list[np.ndarray]) -> np.ndarray | None:
    """The value of `op` applied to constant operands `args`, or None when not foldable."""
    shape = rdu.shape_of(op.results[0].type) if isinstance(op.results[0].type, TensorType) else ()
    if isinstance(op, tensor.ConcatOp):
        return np.concatenate(args, axis=op.dim.value.data)
    if isinstance(op, tensor.CollapseShapeOp | tensor.ExpandShapeOp):
        return args[0].reshape(shape)
    if isinstance(op, tensor.ExtractSliceOp):
        if op.offsets or op.sizes or op.strides:
            return None
        offsets = op.static_offsets.get_values()
        sizes = op.static_sizes.get_values()
        strides = op.static_strides.get_values()
        index = tuple(slice(o, o + (n - 1) * st + 1, st) for o, n, st in zip(offsets, sizes, strides, strict=True))
        return args[0][index].reshape(shape)
    if isinstance(op, tensor.ExtractOp):
        return np.asarray(args[0][tuple(int(i) for i in args[1:])])
    out = evaluate_op(op, args)
    dtype = numpy_dtype(op.results[0].type)
    return np.asarray(out).astype(dtype)


def scalar_side(fn: func.FuncOp) -> set[Operation]:
    """The function-level ops that only feed scalar code and checks: scalar ops,
    `cf.assert`, and foldable tensor ops whose every use is on the scalar side."""
    side: set[Operation] = set()
    for op in reversed(list(fn.body.block.ops)):
        if isinstance(op, cf.AssertOp) or is_top_level_scalar_op(op):
            side.add(op)
        elif isinstance(op, FOLDABLE_TENSOR_OPS) and all(u.operation in side for r in op.results for u in r.uses):
            side.add(op)
    return side


@dataclass
class FoldScalarOp(RewritePattern):
    """Replace a scalar-side op of `fn` whose operands are all known constants by its
    value; record constants; refuse a check that fails for every input."""

    fn: func.FuncOp
    side: set[Operation]
    positions: dict[Operation, int]
    known: dict[SSAValue, np.ndarray] = field(default_factory=dict[SSAValue, np.ndarray])
    refusal: CompileError | None = None
    """A check that fails; raised after the walk (a pattern that raises has the walker
    print the whole module into the exception), and nothing is folded after it."""

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if op.parent_op() is not self.fn or self.refusal is not None:
            return
        if isinstance(op, arith.ConstantOp):
            value = constant_array(op)
            if value is not None:
                self.known[op.results[0]] = value
            return
        if isinstance(op, cf.AssertOp):
            cond = self.known.get(op.arg)
            if cond is not None and not bool(np.all(cond)):
                self.refusal = CompileError(
                    "rdu-fold-constants",
                    f"runtime check (op #{self.positions[op]} of @{self.fn.sym_name.data}) fails for every input: "
                    f"{op.msg.data}",
                )
            return
        if op not in self.side or len(op.results) != 1 or op.regions or not op.operands:
            return
        if not all(v in self.known for v in op.operands):
            return
        result_type = op.results[0].type
        if isinstance(result_type, TensorType) and 0 in rdu.shape_of(result_type):
            return  # an empty tensor: rdu-convert-linalg refuses it by this op's name
        try:
            value = fold_one(op, [self.known[v] for v in op.operands])
        except Exception:  # noqa: BLE001 - not foldable: converted as usual
            value = None
        if value is None or value.size > FOLD_MAX_ELEMENTS:
            return
        const = constant_op(value, result_type)
        rewriter.replace_op(op, const)
        self.known[const.results[0]] = value


def fold_constants(fn: func.FuncOp) -> None:
    """Fold the scalar side of `fn` (module docstring)."""
    positions = {op: i for i, op in enumerate(fn.body.block.ops)}
    pattern = FoldScalarOp(fn, scalar_side(fn), positions)
    PatternRewriteWalker(pattern, apply_recursively=False).rewrite_region(fn.body)
    if pattern.refusal is not None:
        raise pattern.refusal


@dataclass(frozen=True)
class RduFoldConstantsPass(ModulePass):
    """Evaluate function-level scalar code and shape checks on constants (module docstring)."""

    name = "rdu-fold-constants"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in functions(op):
            # before anything is verified: newer MLIR's trunci flags, which xDSL lacks
            PatternRewriteWalker(DropTrunciOverflowFlags(), apply_recursively=False).rewrite_region(fn.body)
            fold_constants(fn)
