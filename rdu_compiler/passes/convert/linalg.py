"""linalg -> rdu: `linalg.generic` and the named structured ops (`matmul`,
`batch_matmul`, `dot`, `matvec`, `vecmat`, `fill`, `transpose`, `broadcast`,
convolutions, poolings, other named ops with memoized maps) become one `rdu.kernel` with
an explicit iteration domain, indexing maps, iterator types and payload.

A kernel over an empty domain (every operand 0-d) gets a one-element domain, its 0-d
operands and results read through `<reshape>` views, so each has a buffer like in every
other kernel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from xdsl.dialects import tensor
from xdsl.dialects.builtin import (
    AffineMapAttr,
    ArrayAttr,
    DenseArrayBase,
    DenseIntOrFPElementsAttr,
    StringAttr,
    TensorType,
)
from xdsl.dialects.linalg import ops as linalg
from xdsl.dialects.linalg.abstract_ops import LinalgStructuredOperation, NamedOperation
from xdsl.ir import Operation, Region, SSAValue
from xdsl.ir.affine import AffineDimExpr, AffineExpr, AffineMap
from xdsl.pattern_rewriter import PatternRewriter

from rdu_compiler.dialects import rdu
from rdu_compiler.ir import op_name
from rdu_compiler.kernel.payload import classify_kernel
from rdu_compiler.passes.convert.common import (
    ConversionPattern,
    infer_domain,
    is_top_level_scalar_op,
    iter_attrs,
    named,
)
from rdu_compiler.passes.convert.payload import build_payload


@dataclass
class _Structured:
    """A structured op seen in the linalg.generic form."""

    inputs: list[SSAValue]
    inits: list[SSAValue]
    maps: list[AffineMap]
    iterators: list[str] | None
    region: Region


def _contraction_iterators(maps: list[AffineMap]) -> list[str]:
    out_dims = {e.position for e in maps[-1].results if isinstance(e, AffineDimExpr)}
    return ["parallel" if d in out_dims else "reduction" for d in range(maps[0].num_dims)]


def _default_matmul_maps(name: str, rank: int) -> list[AffineMap]:
    d = [AffineDimExpr(i) for i in range(rank + 2)]
    if name == "linalg.dot":
        return [AffineMap(1, 0, (d[0],)), AffineMap(1, 0, (d[0],)), AffineMap(1, 0, ())]
    if name == "linalg.matvec":
        return [AffineMap(2, 0, (d[0], d[1])), AffineMap(2, 0, (d[1],)), AffineMap(2, 0, (d[0],))]
    if name == "linalg.vecmat":
        return [AffineMap(2, 0, (d[0],)), AffineMap(2, 0, (d[0], d[1])), AffineMap(2, 0, (d[1],))]
    if name == "linalg.batch_matvec":
        return [AffineMap(3, 0, (d[0], d[1], d[2])), AffineMap(3, 0, (d[0], d[2])), AffineMap(3, 0, (d[0], d[1]))]
    if name == "linalg.batch_vecmat":
        return [AffineMap(3, 0, (d[0], d[1])), AffineMap(3, 0, (d[0], d[1], d[2])), AffineMap(3, 0, (d[0], d[2]))]
    if name == "linalg.matmul":
        return [AffineMap(3, 0, (d[0], d[2])), AffineMap(3, 0, (d[2], d[1])), AffineMap(3, 0, (d[0], d[1]))]
    return [
        AffineMap(4, 0, (d[0], d[1], d[3])),
        AffineMap(4, 0, (d[0], d[3], d[2])),
        AffineMap(4, 0, (d[0], d[1], d[2])),
    ]


def _segments(op: Operation) -> tuple[list[SSAValue], list[SSAValue]]:
    seg = op.properties.get("operandSegmentSizes")
    operands = list(op.operands)
    if isinstance(seg, DenseArrayBase):
        n_in = int(seg.get_values()[0])
        return operands[:n_in], operands[n_in:]
    return operands[:-1], operands[-1:]


def _maps_prop(op: Operation) -> list[AffineMap] | None:
    attr = op.properties.get("indexing_maps")
    if not isinstance(attr, ArrayAttr):
        return None
    return [m.data for m in attr.data if isinstance(m, AffineMapAttr)]


def _as_structured(op: Operation) -> _Structured | None:
    """The op as inputs/inits/maps/payload, or None if it is not a structured op we know."""
    name = op_name(op)
    if isinstance(op, linalg.GenericOp):
        maps = [m.data for m in op.indexing_maps.data]
        its = [str(it.data.value) for it in op.iterator_types.data]
        return _Structured(list(op.inputs), list(op.outputs), maps, its, op.regions[0])
    if isinstance(op, linalg.MatmulOp) or named(op, *_MATMUL_FAMILY):
        ins, outs = _segments(op)
        rank = len(rdu.shape_of(outs[0].type))
        maps = _maps_prop(op) or _default_matmul_maps(name, rank)
        return _Structured(ins, outs, maps, _contraction_iterators(maps), op.regions[0])
    if isinstance(op, linalg.FillOp):
        ins, outs = _segments(op)
        rank = len(rdu.shape_of(outs[0].type))
        maps = [AffineMap(rank, 0, ()), AffineMap.identity(rank)]
        return _Structured(ins, outs, maps, ["parallel"] * rank, op.regions[0])
    if isinstance(op, linalg.TransposeOp):
        perm = list(op.permutation.get_values())
        rank = len(perm)
        in_map = AffineMap(rank, 0, tuple(AffineDimExpr(perm.index(j)) for j in range(rank)))
        return _Structured(list(op.inputs), list(op.outputs), [in_map, AffineMap.identity(rank)], ["parallel"] * rank, op.regions[0])
    if isinstance(op, linalg.BroadcastOp):
        ins, outs = _segments(op)
        added = op.dimensions
        rank = len(rdu.shape_of(outs[0].type))
        kept = [d for d in range(rank) if d not in set(added.get_values())]
        in_map = AffineMap(rank, 0, tuple(AffineDimExpr(d) for d in kept))
        return _Structured(ins, outs, [in_map, AffineMap.identity(rank)], ["parallel"] * rank, op.regions[0])
    if name.startswith(("linalg.conv_", "linalg.pooling_", "linalg.depthwise_conv")):  # xDSL defines a few
        maps = _maps_prop(op)
        if maps is None:
            memo = op.attributes.get("linalg.memoized_indexing_maps") or op.properties.get("linalg.memoized_indexing_maps")
            if isinstance(memo, ArrayAttr):
                maps = [m.data for m in memo.data if isinstance(m, AffineMapAttr)]
        if maps is None and isinstance(op, NamedOperation):
            maps = [m.data for m in op.get_indexing_maps().data] if hasattr(op, "get_indexing_maps") else None
        if maps is None:
            conv = _conv_maps(op)
            if conv is not None:
                ins, outs = _segments(op)
                return _Structured(ins, outs, conv[0], conv[1], op.regions[0])
        if maps is None:
            return None
        ins, outs = _segments(op)
        its = None
        if isinstance(op, LinalgStructuredOperation):
            its = [str(it.data.value) for it in op.get_iterator_types().data]
        return _Structured(ins, outs, maps, its or _contraction_iterators(maps), op.regions[0])
    memo = op.attributes.get("linalg.memoized_indexing_maps") or op.properties.get("linalg.memoized_indexing_maps")
    if name.startswith("linalg.") and isinstance(memo, ArrayAttr) and op.regions:
        # Another named structured op (quantized_matmul, ...): its maps are memoized.
        maps = [m.data for m in memo.data if isinstance(m, AffineMapAttr)]
        ins, outs = _segments(op)
        if len(maps) == len(ins) + len(outs):
            return _Structured(ins, outs, maps, _contraction_iterators(maps), op.regions[0])
    return None


def _conv_maps(op: Operation) -> tuple[list[AffineMap], list[str]] | None:
    """Indexing maps and iterator types of a named convolution or pooling op, from its name
    (`linalg.conv_2d_nchw_fchw`, `linalg.depthwise_conv_2d_nchw_chw`, `linalg.pooling_ndhwc_sum`,
    ...), `strides` and `dilations`; None for a layout this does not know."""
    m = re.fullmatch(r"linalg\.(conv|depthwise_conv|pooling)_(?:\dd_)?([a-z]+)_([a-z]+)", op_name(op))
    if m is None:
        return None
    kind, in_layout, second = m.groups()
    if kind == "pooling":
        if second not in ("sum", "max", "min", "maxu", "minu"):
            return None
        filter_layout = "".join(c for c in in_layout if c in "dhw")
    else:
        filter_layout = second
    spatial = [c for c in in_layout if c in "dhw"]
    if set(in_layout) - set("ncdhw") or sorted(in_layout) != sorted(set(in_layout)) or "n" not in in_layout or "c" not in in_layout:
        return None
    expected_filter = set(spatial) | ({"f", "c"} if kind == "conv" else {"c"} if kind == "depthwise_conv" else set())
    if set(filter_layout) != expected_filter or len(filter_layout) != len(expected_filter):
        return None
    strides = _int_list(op, "strides", len(spatial))
    dilations = _int_list(op, "dilations", len(spatial))
    if strides is None or dilations is None:
        return None
    out_layout = in_layout.replace("c", "f") if kind == "conv" else in_layout
    dims: dict[str, int] = {}
    for c in out_layout:  # parallel loops, in output order
        dims["o" + c if c in "dhw" else c] = len(dims)
    n_par = len(dims)
    if kind == "conv":
        dims["c"] = len(dims)
    for c in spatial:
        dims["k" + c] = len(dims)
    rank = len(dims)

    def d(key: str) -> AffineExpr:
        return AffineDimExpr(dims[key])

    in_exprs = []
    for c in in_layout:
        if c in "dhw":
            i = spatial.index(c)
            in_exprs.append(d("o" + c) * strides[i] + d("k" + c) * dilations[i])
        else:
            in_exprs.append(d(c))
    filt = [d("k" + c) if c in "dhw" else d(c) for c in filter_layout]
    out = [d("o" + c) if c in "dhw" else d(c) for c in out_layout]
    maps = [AffineMap(rank, 0, tuple(in_exprs)), AffineMap(rank, 0, tuple(filt)), AffineMap(rank, 0, tuple(out))]
    return maps, ["parallel"] * n_par + ["reduction"] * (rank - n_par)


def _int_list(op: Operation, name: str, n: int) -> list[int] | None:
    attr = op.properties.get(name) or op.attributes.get(name)
    if attr is None:
        return [1] * n
    if isinstance(attr, DenseIntOrFPElementsAttr):
        values = [int(v) for v in attr.get_values()]
    elif isinstance(attr, DenseArrayBase):
        values = [int(v) for v in attr.get_values()]
    else:
        return None
    if len(values) == 1 and n > 1:
        values = values * n
    return values if len(values) == n else None


def _kernel_from(op: Operation, st: _Structured, index: int) -> list[Operation]:
    """The rdu ops replacing a structured op: its kernel, and for a kernel over an empty
    domain (every operand 0-d) views that give it a one-element domain, so that each
    operand and its result have a buffer like in every other kernel."""
    where = f"'{op_name(op)}' (op #{index})"
    shapes = [rdu.shape_of(v.type) for v in (*st.inputs, *st.inits)]
    domain = infer_domain(st.maps, shapes, where)
    iterators = st.iterators or ["parallel"] * len(domain)
    n_in = len(st.inputs)
    scalar_inputs = {
        i: v for i, v in enumerate(st.inputs)
        if not isinstance(v.type, TensorType) and isinstance(v.owner, Operation) and is_top_level_scalar_op(v.owner)
    }
    payload, captures, extra = build_payload(st.region, n_in, n_in + len(st.inits), len(domain), scalar_inputs)
    kept = [i for i in range(n_in) if i not in scalar_inputs]
    inputs = [*(st.inputs[i] for i in kept), *(v for v, _ in extra)]
    maps = [*(st.maps[i] for i in kept), *(m for _, m in extra), *st.maps[n_in:]]
    result_types = [r.type for r in op.results]
    before: list[Operation] = []
    after: list[Operation] = []
    if not domain:
        domain, iterators = [1], ["parallel"]
        d0 = AffineMap(1, 0, (AffineDimExpr(0),))

        def as_vector(v: SSAValue) -> SSAValue:
            if not isinstance(v.type, TensorType):
                return v
            if isinstance(v.owner, tensor.EmptyOp):
                empty = tensor.EmptyOp([], TensorType(v.type.element_type, [1]))
                before.append(empty)
                return empty.results[0]
            view = rdu.ViewOp(v, TensorType(v.type.element_type, [1]))
            before.append(view)
            return view.results[0]

        operands, new_maps = [], []
        for v, mp in zip([*inputs, *st.inits], maps, strict=True):
            if isinstance(v.type, TensorType) and not rdu.shape_of(v.type):  # 0-d: a 1-vector
                operands.append(as_vector(v))
                new_maps.append(d0)
            else:  # scalars, and tensors read at constant indices
                operands.append(v)
                new_maps.append(AffineMap(1, 0, tuple(mp.results)))
        maps = new_maps
        inputs, inits = operands[: len(inputs)], operands[len(inputs):]
        result_types = [TensorType(t.element_type, [1]) if isinstance(t, TensorType) else t for t in result_types]
    else:
        inits = list(st.inits)
    kind = classify_kernel(payload.block, len(inputs), iterators, maps)
    kernel = rdu.KernelOp(
        inputs,
        inits,
        captures,
        result_types,
        kind,
        domain,
        [AffineMapAttr(m) for m in maps],
        iter_attrs(iterators),
        payload,
        {"sym_name": StringAttr(f"k{index}_{kind.value}")},
    )
    for r, t in zip(kernel.results, [r.type for r in op.results], strict=True):
        if r.type != t:
            after.append(rdu.ViewOp(r, t))
    return [*before, kernel, *after]


#: Contractions xDSL 0.74 does not define (besides `linalg.matmul`, which it does).
_MATMUL_FAMILY = (
    "linalg.batch_matmul", "linalg.dot", "linalg.matvec", "linalg.vecmat", "linalg.batch_matvec", "linalg.batch_vecmat",
)


class ConvertStructuredOp(ConversionPattern):
    """A function-level structured op becomes its kernel (and, for an empty domain, the
    views around it)."""

    def convert(self, op: Operation, rewriter: PatternRewriter) -> None:
        st = _as_structured(op)
        if st is None:
            return
        new_ops = _kernel_from(op, st, self.cx.index(op))
        new_results = [r for o in new_ops[-len(op.results):] for r in o.results] if len(new_ops) > 1 else None
        rewriter.replace(op, new_ops, new_results)
