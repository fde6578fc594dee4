"""rdu-convert-linalg: every linalg/tensor op of a torch-mlir module becomes rdu.

- `linalg.generic` and the named structured ops (`matmul`, `batch_matmul`, `fill`,
  `transpose`, convolutions and poolings) become `rdu.kernel` with an explicit iteration
  domain, indexing maps, iterator types and payload (constants from outside are cloned
  into the payload; other outside values become captures): `convert/linalg.py`.
- `tm_tensor.scan` / `scatter` / `sort` become kernels: `convert/tm_tensor.py`.
- `tensor.expand_shape` / `collapse_shape` / `extract_slice` become `rdu.view`,
  `tensor.concat` becomes `rdu.concat`, `tensor.pad` becomes `rdu.pad`,
  `tensor.insert_slice` a pad or a gather kernel: `convert/tensor_ops.py`.
- Function-level scalar code is cloned into the payloads that read it, then erased; a
  check (`cf.assert`) whose condition is the constant true is dropped (run
  `rdu-fold-constants` first to fold shape checks on constants).
- A collisionless-table lookup (`linalg.generic {library_call = "rdu_hash_find"}`) is
  kept, tagged with its op number, for `rdu-hash-lookup`; any other `library_call` is refused.
- Any other op is refused by name.

The pass is a list of patterns (`conversion_patterns`) applied by one forward walk over
each function, visiting each op of the input once, in order (the first op without a rule
is the one refused), then a backward walk erasing the scalar code no payload needs.
Kernels are named after their op's position in the input (`k7_matmul`: op #7), as are
refusals, so the driver can name the model line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, cf, func
from xdsl.dialects.builtin import (
    IntegerAttr,
    ModuleOp,
    StringAttr,
    TensorType,
)
from xdsl.ir import BlockArgument, Operation
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
)

from rdu_compiler.dialects import rdu
from rdu_compiler.errors import CompileError
from rdu_compiler.ir import op_name
from rdu_compiler.passes.common import functions
from rdu_compiler.passes.convert.common import (
    KEEP,
    ConversionPattern,
    DropTrunciOverflowFlags,
    FunctionConversion,
    is_top_level_scalar_op,
)
from rdu_compiler.passes.convert.linalg import ConvertStructuredOp
from rdu_compiler.passes.convert.tensor_ops import ConvertInsertSlice, ConvertLayoutOp
from rdu_compiler.passes.convert.tm_tensor import ConvertTmTensorOp

_SUPPORTED = (
    "supported: linalg.generic/matmul/batch_matmul/dot/matvec/fill/transpose/broadcast/conv/pooling, "
    "tm_tensor.scan/scatter/sort, tensor.expand_shape/collapse_shape/extract_slice/insert_slice/concat/pad"
)

#: Ops without an rdu lowering, and what to write instead (for the refusal message).
_ALTERNATIVES = {
    "scf.for": "a loop unrolled at export time (static trip count)",
    "scf.while": "a loop unrolled at export time (static trip count)",
    "ml_program.global_load": "random values passed as an input (the program keeps no random-number state)",
}


#: The most elements one tensor of a program may have (2**32): a bound on what a small
#: input file can ask for (a 189-byte ONNX file can ask for a 10**12-element constant).
MAX_TENSOR_ELEMENTS = 1 << 32


def check_static_nonempty(fn: func.FuncOp) -> None:
    """Refuse tensors with a dynamic dimension, a zero-size one (nothing to compute, no
    tile to place), or more than :data:`MAX_TENSOR_ELEMENTS` elements."""
    values = list(fn.body.block.args) + [r for op in fn.body.block.ops for r in op.results]
    for v in values:
        if isinstance(v.type, TensorType) and any(d < 0 for d in v.type.get_shape()):
            what = f"argument #{v.index}" if isinstance(v, BlockArgument) else f"the result of '{op_name(v.owner)}'"  # type: ignore[arg-type]
            raise CompileError(
                "rdu-convert-linalg",
                f"{what} in @{fn.sym_name.data} has a dynamic shape ({v.type}): its size depends on "
                "the input values (NonZero, NonMaxSuppression, data-dependent crops), and a dataflow "
                "program needs static shapes. Compute that part outside the model or give it a "
                "fixed output size.",
            )
        if isinstance(v.type, TensorType) and math.prod(rdu.shape_of(v.type)) > MAX_TENSOR_ELEMENTS:
            if isinstance(v, BlockArgument):
                what = f"argument #{v.index} of @{fn.sym_name.data}"
            else:  # 'op ... (op #i of @f)': the driver names the model line / ONNX node
                index = list(fn.body.block.ops).index(v.owner)  # type: ignore[arg-type]
                what = f"the result of op '{op_name(v.owner)}' (op #{index} of @{fn.sym_name.data})"  # type: ignore[arg-type]
            raise CompileError(
                "rdu-convert-linalg",
                f"{what} is a tensor of {math.prod(rdu.shape_of(v.type)):,} "
                f"elements ({v.type}), more than the {MAX_TENSOR_ELEMENTS:,} (2**32) one tensor may "
                "have (the emulator holds every tensor in host memory). Check the shapes the "
                "model asks for (a ConstantOfShape / Expand / zeros(...) with a wrong size), or "
                "split the tensor.",
            )
        if isinstance(v.type, TensorType) and 0 in rdu.shape_of(v.type) and (v.uses or not isinstance(v, BlockArgument)):
            what = f"argument #{v.index}" if isinstance(v, BlockArgument) else f"the result of '{op_name(v.owner)}'"  # type: ignore[arg-type]
            raise CompileError(
                "rdu-convert-linalg",
                f"{what} in @{fn.sym_name.data} is an empty tensor ({v.type}); tensors with a "
                "zero-size dimension are not supported. Remove the empty computation from the model.",
            )


class EraseTrivialAssert(ConversionPattern):
    """A function-level check whose condition is the constant true holds for every input
    (rdu-fold-constants leaves shape checks so): it is dropped."""

    def convert(self, op: Operation, rewriter: PatternRewriter) -> None:
        if not isinstance(op, cf.AssertOp):
            return
        cond = op.arg.owner
        if isinstance(cond, arith.ConstantOp) and isinstance(cond.value, IntegerAttr) and cond.value.value.data != 0:
            rewriter.erase(op)


class KeepHashLookup(ConversionPattern):
    """A collisionless-table lookup (`linalg.generic {library_call = "rdu_hash_find"}`, the
    frontend's marker of the custom op) stays for `rdu-hash-lookup`, tagged with its op
    number (`rdu.op`); a marker of any other library call is refused (its payload is not
    its meaning)."""

    def convert(self, op: Operation, rewriter: PatternRewriter) -> None:
        from rdu_compiler.passes.rdu_hash_lookup import CALL, OP_ATTR, library_call

        call = library_call(op)
        if call is None:
            return
        if call != CALL:
            raise CompileError(
                "rdu-convert-linalg",
                f"linalg.generic (op #{self.cx.index(op)} of @{self.cx.fn.sym_name.data}) calls library function "
                f"'{call}', which has no rdu lowering (only '{CALL}', a collisionless-table lookup, has one)",
            )
        op.attributes[OP_ATTR] = StringAttr(f"k{self.cx.index(op)}")
        rewriter.notify_op_modified(op)


class RefuseUnconverted(ConversionPattern):
    """Last in the list: a function-level op that no earlier pattern converted has no rdu
    lowering; refuse it, naming it, its position and the nearest alternative."""

    def convert(self, op: Operation, rewriter: PatternRewriter) -> None:
        fn, index, name = self.cx.fn, self.cx.index(op), op_name(op)
        if isinstance(op, cf.AssertOp):
            raise CompileError(
                "rdu-convert-linalg",
                f"a runtime check on values computed from the inputs (op #{index} of "
                f"@{fn.sym_name.data}: \"{op.msg.data}\") has no rdu lowering; the "
                "fabric runs no scalar control code. Make the checked value a compile-time constant.",
            )
        alt = _ALTERNATIVES.get(name)
        hint = f"; nearest supported alternative: {alt}" if alt else ""
        raise CompileError(
            "rdu-convert-linalg",
            f"op '{name}' (op #{index} of @{fn.sym_name.data}) has no rdu lowering{hint}; {_SUPPORTED}",
        )


@dataclass
class EraseUnreadScalarOp(RewritePattern):
    """Function-level scalar code that the payloads cloned and nobody else reads is erased
    (applied backwards, so a chain goes from its last op)."""

    cx: FunctionConversion

    def match_and_rewrite(self, op: Operation, rewriter: PatternRewriter) -> None:
        if op.parent_op() is not self.cx.fn or isinstance(op, KEEP) or not is_top_level_scalar_op(op):
            return
        if not any(r.uses for r in op.results):
            rewriter.erase(op)


def conversion_patterns(cx: FunctionConversion) -> list[RewritePattern]:
    """The conversion of function `cx.fn`, in the order they are tried on each op."""
    return [
        EraseTrivialAssert(cx),
        KeepHashLookup(cx),
        ConvertTmTensorOp(cx),
        ConvertStructuredOp(cx),
        ConvertLayoutOp(cx),
        ConvertInsertSlice(cx),
        RefuseUnconverted(cx),
    ]


def convert_function(fn: func.FuncOp) -> None:
    """Convert every op in `fn`'s body; refuse the first op there is no rule for.

    Raises:
        CompileError: an op without an rdu lowering, a dynamic, empty or too large tensor,
            or scalar code whose result something other than a kernel payload reads.
    """
    check_static_nonempty(fn)
    PatternRewriteWalker(DropTrunciOverflowFlags(), apply_recursively=False).rewrite_region(fn.body)
    cx = FunctionConversion.of(fn)
    deferred = [op for op in fn.body.block.ops if not isinstance(op, KEEP) and is_top_level_scalar_op(op)]
    # dce off: unread constants stay where they are, as before this pass was patterns
    applier = GreedyRewritePatternApplier(conversion_patterns(cx), dce_enabled=False)
    walker = PatternRewriteWalker(applier, apply_recursively=False)
    walker.rewrite_region(fn.body)
    cx.raise_refusal()
    PatternRewriteWalker(EraseUnreadScalarOp(cx), apply_recursively=False, walk_reverse=True).rewrite_region(fn.body)
    for op in deferred:
        if op.parent is not None:
            user = next(iter(op.results[0].uses)).operation
            raise CompileError(
                "rdu-convert-linalg",
                f"scalar op '{op_name(op)}' (op #{cx.index(op)} of @{fn.sym_name.data}) feeds "
                f"'{op_name(user)}', which is not a kernel payload; scalar code outside kernels has "
                f"no rdu lowering. {_SUPPORTED}",
            )


@dataclass(frozen=True)
class RduConvertLinalgPass(ModulePass):
    """Lower linalg-on-tensors (torch-mlir's output) to rdu kernels and layout ops."""

    name = "rdu-convert-linalg"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in functions(op):
            convert_function(fn)
            refuse_unrunnable(fn)


def refuse_unrunnable(fn: func.FuncOp) -> None:
    """Refuse, at compile time, what the emulator would refuse at run time: each kernel is
    prepared as the emulator prepares it (its payload compiled, its reductions matched to
    a combiner), and a constant must have its data (not an elided ``dense_resource``).
    Whatever compiles then runs.

    Raises:
        CompileError: naming the kernel ('k7_gather', whose number is the op's position in
            the input, so the caller can name the model line) and the emulator's reason.
    """
    from xdsl.dialects.builtin import DenseResourceAttr

    from rdu_compiler.errors import EmulatorError
    from rdu_compiler.interpreters.kernel import KernelExecutor

    for op in fn.body.block.ops:
        if isinstance(op, arith.ConstantOp) and isinstance(op.value, DenseResourceAttr):
            raise CompileError(
                "rdu-convert-linalg",
                f"a constant of @{fn.sym_name.data} ({op.value}) is a resource blob whose data "
                "the input does not hold (elided, or not in a trailing dialect_resources "
                "section); the compiler needs its values. Print the module with its resources "
                "(no --mlir-elide-resource-strings-if-larger).",
            )
        if isinstance(op, rdu.KernelOp):
            try:
                KernelExecutor(op)
            except EmulatorError as e:
                raise CompileError(
                    "rdu-convert-linalg",
                    f"{e} (refused at compile time: the emulator cannot run this kernel). "
                    "Rewrite the model op it comes from with supported operations.",
                ) from None
