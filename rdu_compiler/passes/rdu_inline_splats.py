"""rdu-inline-splats: a splat constant a kernel reads becomes one scalar, not a stream.

torch-mlir hands splat tensors to ops as operands: SDPA's softmax accumulators start from
`dense<0.0> : tensor<1x8xSxSxf32>`, its causal path selects through `dense<true> :
tensor<SxSxi1>`. Read as kernel operands, each would be a whole tensor loaded from HBM
(32 MiB of zeros at S = 1024) for a value the PCU can hold in a register. This pass
rewrites, for every `rdu.kernel` operand produced by an `arith.constant` whose value is
a splat:

- an **input**: the payload reads an `arith.constant` of the element value where it read
  the element (every backend evaluates payload constants; nothing is streamed);
- an **init of a reduction** that the payload reads (an accumulator's start): the
  accumulator starts at the scalar (`init_fills`, as `rdu-fuse` does for a fill), and the
  init becomes a `tensor.empty` that only gives the result's shape.

Other inits (written, never read) need nothing: they move no bytes already. The pass is
local (one `RewritePattern` on `rdu.kernel`) and runs at -O0 and -O1 right after
`rdu-convert-linalg`; it changes no number the kernel computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects import arith, tensor
from xdsl.dialects.builtin import (
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    ModuleOp,
    StringAttr,
    i64,
)
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)

from rdu_compiler.dialects import rdu


def splat_scalar(value: SSAValue) -> Attribute | None:
    """The element attribute of `value` when it is a splat `arith.constant` tensor (its
    stored bytes hold one element, or every element is the same), else None."""
    op = value.owner
    if not isinstance(op, arith.ConstantOp) or not isinstance(op.value, DenseIntOrFPElementsAttr):
        return None
    attr = op.value
    data, stored = bytes(attr.data.data), len(attr)
    if not stored or len(data) % stored:
        return None
    if stored > 1:
        words = np.frombuffer(data, dtype=np.uint8).reshape(stored, -1)
        if not (words == words[0]).all():
            return None
    return attr.get_attrs()[0]


def _scalar_constant(attr: Attribute) -> arith.ConstantOp:
    return arith.ConstantOp(attr)  # type: ignore[arg-type]


class InlineSplatOperands(RewritePattern):
    """Splat inputs -> payload constants; splat accumulator inits -> `init_fills`."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, kernel: rdu.KernelOp, rewriter: PatternRewriter) -> None:
        n_in, n_init = len(kernel.inputs), len(kernel.inits)
        first = len(kernel.scatter_dims.get_values()) if kernel.scatter_dims is not None else 0  # a scatter's index inputs stay
        in_splats = {i: a for i, v in enumerate(kernel.inputs) if i >= first and (a := splat_scalar(v)) is not None}
        block = kernel.body.block
        reduction = bool(kernel.reduction_dims) and kernel.kind.data != rdu.Pattern.SCAN
        fills = list(kernel.init_fills.get_values()) if kernel.init_fills is not None else [-1] * n_init
        init_splats = {j: a for j, v in enumerate(kernel.inits)
                       if reduction and fills[j] == -1 and block.args[n_in + j].uses and (a := splat_scalar(v)) is not None}
        if not in_splats and not init_splats:
            return
        new_ops: list[Operation] = []
        captures = list(kernel.captures)
        for i, a in in_splats.items():  # the payload reads a scalar constant instead
            c = _scalar_constant(a)
            if block.first_op is not None:
                block.insert_op_before(c, block.first_op)
            else:
                block.add_op(c)
            block.args[i].replace_all_uses_with(c.result)
        inits = list(kernel.inits)
        for j, a in init_splats.items():  # the accumulator starts at the scalar
            c = _scalar_constant(a)
            empty = tensor.EmptyOp([], kernel.inits[j].type)
            new_ops += [c, empty]
            block.insert_arg(c.result.type, len(block.args))
            fills[j] = len(captures)
            captures.append(c.result)
            inits[j] = empty.tensor
        for i in sorted(in_splats, reverse=True):
            block.erase_arg(block.args[i])
        keep = [i for i in range(n_in) if i not in in_splats]
        maps = [*(kernel.indexing_maps.data[i] for i in keep), *kernel.indexing_maps.data[n_in:]]
        kernel.body.detach_block(block)
        from xdsl.ir import Region

        props = {k: v for k, v in kernel.properties.items()
                 if k not in ("operandSegmentSizes", "init_fills", "indexing_maps", "sym_name")}
        new = rdu.KernelOp(
            [kernel.inputs[i] for i in keep], inits, captures, [r.type for r in kernel.results], kernel.kind.data,
            kernel.domain_sizes, list(maps), list(kernel.iterator_types.data), Region(block),
            {"sym_name": StringAttr(kernel.label), **props},
        )
        if init_splats or kernel.init_fills is not None:
            new.init_fills = DenseArrayBase.from_list(i64, fills)
        old_constants = {kernel.inputs[i].owner for i in in_splats} | {kernel.inits[j].owner for j in init_splats}
        rewriter.insert_op(new_ops, _before(kernel))
        rewriter.replace_matched_op(new)
        for c in old_constants:  # the splat tensors nobody reads any more
            if isinstance(c, Operation) and not any(r.uses for r in c.results):
                rewriter.erase_op(c)


def _before(op: Operation):  # noqa: ANN202 - xDSL's InsertPoint
    from xdsl.rewriter import InsertPoint

    return InsertPoint.before(op)


@dataclass(frozen=True)
class RduInlineSplatsPass(ModulePass):
    """Splat constants read by kernels become scalars (payload constants / accumulator starts)."""

    name = "rdu-inline-splats"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        PatternRewriteWalker(InlineSplatOperands(), apply_recursively=False).rewrite_module(op)
