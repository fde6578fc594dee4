"""The ONNX rewrites before torch-mlir, as a named list (:data:`STEPS`), like a pass pipeline.

Each step takes the :class:`Prepared` state (the model being rewritten, in place or replaced)
and changes it; :func:`prepare` runs them in order. A step can be skipped by name
(``import_onnx(..., skip_steps=("decompose",))``) to find which rewrite changes a result, and
``on_step`` sees the model after every step::

    from rdu_compiler.frontend.onnx.prepare import STEPS
    for step in STEPS:
        print(f"{step.name:26} {step.doc}")

Steps that change the graph re-run ONNX shape inference after themselves, so every step
sees static shapes and types of every value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rdu_compiler.frontend.errors import FrontendError
from rdu_compiler.frontend.onnx.control_flow import inline_constant_ifs, unroll_loops
from rdu_compiler.frontend.onnx.errors import OnnxImportError
from rdu_compiler.frontend.onnx.expand import expand_nodes, forced_expansions, inline_functions
from rdu_compiler.frontend.onnx.fold import fold_constants, inline_small_constants
from rdu_compiler.frontend.onnx.graph import dtype_name, infer
from rdu_compiler.frontend.onnx.load import lift_initializers, name_nodes
from rdu_compiler.frontend.onnx.narrow import explicit_quant, lower_narrow_types
from rdu_compiler.frontend.onnx.rewrites import (
    UNSUPPORTED_TYPES,
    check_types,
    decompose,
    refuse_known_wrong,
    widen_unsigned,
)

__all__ = ["STEPS", "Prepared", "Step", "prepare", "step_names"]

#: Rounds of folding / unrolling / inlining constant Ifs: each exposes static shapes, which
#: expose more folding.
_FOLD_ROUNDS = 6


@dataclass
class Prepared:
    """The state the steps rewrite.

    Attributes:
        model: the ``onnx.ModelProto`` being rewritten (a step may replace it).
        where: ``"ONNX model 'path'"``, for error messages.
        expand: ONNX ops (default domain) to replace by their ONNX function bodies.
        importer_expand: ops left for torch-mlir's importer to expand (when ONNX's inliner
            cannot take them).
        weights: the lifted initializers, by name (after ``lift-initializers``).
        node_kinds: node name -> op type, every node named (after ``name-nodes``).
    """

    model: Any
    where: str
    expand: set[str] = field(default_factory=set)
    importer_expand: frozenset[str] = frozenset()
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    node_kinds: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """One named rewrite: ``run(state)`` changes ``state``; ``doc`` is its one-line summary."""

    name: str
    run: Callable[[Prepared], None]

    @property
    def doc(self) -> str:
        return (self.run.__doc__ or "").strip().splitlines()[0]


def _expand_functions(s: Prepared) -> None:
    """Replace ops torch-mlir cannot lower (or lowers wrongly) by their ONNX function bodies."""
    s.expand = set(s.expand) | forced_expansions(s.model.graph)
    if not s.expand:
        return
    s.model = infer(s.model, s.where)
    try:
        s.model = inline_functions(s.model, s.expand, s.where)
    except OnnxImportError:
        # ONNX's inliner cannot take some nodes (optional inputs left out in the middle):
        # expand them one by one as ONNX's own backend tests do, else let torch-mlir's
        # importer expand those ops into private functions.
        if not expand_nodes(s.model, s.expand):
            s.importer_expand = frozenset(s.expand)


def _fold_and_unroll(s: Prepared) -> None:
    """Fold constant subgraphs, unroll Scan/Loop, inline If with a constant condition (repeated)."""
    for _ in range(_FOLD_ROUNDS):
        s.model = infer(s.model, s.where)
        folded = fold_constants(s.model)
        unrolled = unroll_loops(s.model)
        if not (inline_constant_ifs(s.model) or folded or unrolled):
            break


def _explicit_quant(s: Prepared) -> None:
    """Write quantize/dequantize of narrow types out as plain arithmetic."""
    if explicit_quant(s.model):
        s.model = infer(s.model, s.where)


def _refuse_known_wrong(s: Prepared) -> None:
    """Refuse ops (with attributes) that torch-mlir lowers to other numbers than ONNX."""
    refuse_known_wrong(s.model, s.where)


def _decompose(s: Prepared) -> None:
    """Rewrite ops whose torch-mlir lowering differs from ONNX (NaN kept, exact norms, ...)."""
    if decompose(s.model):
        s.model = infer(s.model, s.where)


def _widen_unsigned(s: Prepared) -> None:
    """Compute uint16/uint32 (and uint64 where the bits agree) on wider signed types."""
    if widen_unsigned(s.model):
        s.model = infer(s.model, s.where)


def _lower_narrow_types(s: Prepared) -> None:
    """Compute int4/uint4/int2/float8/float4 values in a type where each is exact."""
    if lower_narrow_types(s.model):
        s.model = infer(s.model, s.where)


def _lift_initializers(s: Prepared) -> None:
    """Turn weight initializers (and large Constant nodes) into graph inputs (weights)."""
    s.weights = lift_initializers(s.model)


def _name_nodes(s: Prepared) -> None:
    """Name every unnamed node ``<OpType>_<index>`` (error messages name nodes)."""
    s.node_kinds = name_nodes(s.model.graph)


def _inline_small_constants(s: Prepared) -> None:
    """Store small constants in typed fields (torch-mlir makes them dense literals)."""
    inline_small_constants(s.model)
    s.model = infer(s.model, s.where)


def _refuse_unsupported_types(s: Prepared) -> None:
    """Refuse element types the compiler or torch-mlir cannot compute (string, uint16+, ...)."""
    for vi in list(s.model.graph.output) + list(s.model.graph.input):
        et = vi.type.tensor_type.elem_type
        if et in UNSUPPORTED_TYPES:
            raise OnnxImportError(
                f"{s.where}: '{vi.name}' has element type {dtype_name(et)}, which the compiler does not "
                "support (float32/16/64, bfloat16, integers and bool are). Convert it with a Cast "
                "before export.",
            )
    check_types(s.model, s.where)


#: The rewrites, in order: what torch-mlir's ONNX importer gets is the model after all of them.
STEPS: tuple[Step, ...] = (
    Step("expand-functions", _expand_functions),
    Step("fold-constants", _fold_and_unroll),
    Step("explicit-quant", _explicit_quant),
    Step("refuse-known-wrong", _refuse_known_wrong),
    Step("decompose", _decompose),
    Step("widen-unsigned", _widen_unsigned),
    Step("lower-narrow-types", _lower_narrow_types),
    Step("lift-initializers", _lift_initializers),
    Step("name-nodes", _name_nodes),
    Step("inline-small-constants", _inline_small_constants),
    Step("refuse-unsupported-types", _refuse_unsupported_types),
)


def step_names() -> list[str]:
    """The names of :data:`STEPS`, in order."""
    return [s.name for s in STEPS]


def prepare(
    proto: Any,
    expand: Iterable[str],
    where: str,
    *,
    skip: Iterable[str] = (),
    on_step: Callable[[str, Any], None] | None = None,
) -> Prepared:
    """The model as torch-mlir gets it: :data:`STEPS` run on a copy of ``proto``.

    Args:
        proto: the ``onnx.ModelProto`` (static input shapes); not changed.
        expand: ops to replace by their ONNX function bodies (beside the forced ones).
        where: ``"ONNX model 'path'"``, for error messages.
        skip: names of steps not to run (for debugging: the result may not lower).
        on_step: called with each step's name and the model after it.

    Raises:
        FrontendError: ``skip`` names no step.
        OnnxImportError: a step refused the model (the message names the node).
    """
    import onnx

    skipped = set(skip)
    unknown = sorted(skipped - set(step_names()))
    if unknown:
        raise FrontendError(
            f"{where}: no ONNX preparation step named {', '.join(map(repr, unknown))}; the steps are "
            f"{', '.join(step_names())}."
        )
    work = onnx.ModelProto()
    work.CopyFrom(proto)
    state = Prepared(work, where, set(expand))
    for step in STEPS:
        if step.name in skipped:
            continue
        step.run(state)
        if on_step is not None:
            on_step(step.name, state.model)
    return state
