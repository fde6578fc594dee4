"""Constant folding of input-independent subgraphs of an exported graph (HF causal masks, RoPE
tables): evaluated with PyTorch at import time, passed as ``"constant"`` arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
from torch.fx.node import map_arg

from rdu_compiler.frontend.torch.diagnostics import aten_name

#: Ops that are cheap to recompute on the fabric (generators and pure data movement): a
#: constant chain made only of these is left as computation instead of becoming a weight.
_CHEAP_OPS = frozenset(
    {
        "aten.arange",
        "aten.full",
        "aten.full_like",
        "aten.zeros",
        "aten.zeros_like",
        "aten.ones",
        "aten.ones_like",
        "aten.empty",
        "aten.empty_like",
        "aten.empty_strided",
        "aten.scalar_tensor",
        "aten.view",
        "aten.reshape",
        "aten._unsafe_view",
        "aten.unsqueeze",
        "aten.squeeze",
        "aten.expand",
        "aten.permute",
        "aten.t",
        "aten.transpose",
        "aten.slice",
        "aten.select",
        "aten.alias",
        "aten.clone",
        "aten._to_copy",
        "aten.lift_fresh_copy",
        "aten.detach",
    }
)


#: Pure data-movement ops: a folding boundary is moved above them (see fold_input_independent).
_VIEW_OPS = frozenset(
    {
        "aten.view",
        "aten.reshape",
        "aten._unsafe_view",
        "aten.unsqueeze",
        "aten.squeeze",
        "aten.expand",
        "aten.permute",
        "aten.t",
        "aten.transpose",
        "aten.alias",
        "aten.clone",
    }
)


def _is_assert(node: torch.fx.Node) -> bool:
    """True for runtime-check nodes (``aten._assert_*``) that produce no value."""
    name = aten_name(node.target) or ""
    return name.startswith("aten._assert") or name.startswith("aten.sym_constrain")


def _is_nondeterministic(node: torch.fx.Node) -> bool:
    """True for random ops (their value must not be frozen at import time)."""
    tags = getattr(node.target, "tags", ())
    return torch.Tag.nondeterministic_seeded in tags or torch.Tag.nondeterministic_bitwise in tags


def fold_input_independent(
    graph: torch.fx.Graph,
    kind_of: dict[str, str],
    weights: dict[str, torch.Tensor],
    foldable: set[str],
    max_bytes: int,
) -> None:
    """Replace input-independent subgraphs of ``graph`` by new constant placeholders.

    A node is constant when all its inputs are constant; the roots are the placeholders in
    ``foldable`` (lifted constants, non-persistent buffers) and ops without inputs. Each
    constant node used by a non-constant node (a "boundary") is evaluated eagerly and
    becomes a new placeholder ``c_folded_<i>`` (kind "constant", tensor in ``weights``),
    inserted before the first user input. Boundaries whose subgraph contains only
    :data:`_CHEAP_OPS`, that are larger than ``max_bytes``, or that are not tensors stay as
    computation. Dead nodes and placeholders in ``foldable`` left without users are removed.
    ``kind_of`` and ``weights`` are updated in place.
    """
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    const: set[torch.fx.Node] = {n for n in placeholders if n.name in foldable}
    order: list[torch.fx.Node] = []
    for node in graph.nodes:
        if node.op != "call_function" or _is_nondeterministic(node):
            continue
        if all(a in const for a in node.all_input_nodes):
            const.add(node)
            order.append(node)
    if not order:
        return

    # Push boundaries above pure view ops, so that e.g. one RoPE cos table is folded once and
    # each layer's unsqueeze of it stays a (free) view instead of a separate constant.
    changed = True
    while changed:
        changed = False
        for node in order:
            if node not in const or (aten_name(node.target) or "") not in _VIEW_OPS:
                continue
            inputs = node.all_input_nodes
            if (
                len(inputs) == 1
                and inputs[0].op == "call_function"
                and node.users
                and all(u not in const for u in node.users)
            ):
                const.discard(node)
                changed = True
    order = [n for n in order if n in const]

    def cheap_only(node: torch.fx.Node, seen: set[torch.fx.Node]) -> bool:
        if node in seen or node.op == "placeholder":
            return True
        seen.add(node)
        if (aten_name(node.target) or "") not in _CHEAP_OPS:
            return False
        return all(cheap_only(a, seen) for a in node.all_input_nodes)

    boundary: list[torch.fx.Node] = []
    for node in order:
        if _is_assert(node) or not any(u not in const for u in node.users):
            continue
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            continue
        if val.numel() * val.element_size() > max_bytes or cheap_only(node, set()):
            continue
        boundary.append(node)
    if not boundary:
        return

    # Evaluate the constant nodes eagerly (only those the boundaries need).
    needed: set[torch.fx.Node] = set()
    stack = list(boundary)
    while stack:
        n = stack.pop()
        if n in needed:
            continue
        needed.add(n)
        stack.extend(a for a in n.all_input_nodes if a.op != "placeholder")
    env: dict[torch.fx.Node, Any] = {n: weights[n.name] for n in placeholders if n in const}
    with torch.no_grad():
        for node in order:
            if node not in needed:
                continue
            args = map_arg(node.args, lambda a: env[a])
            kwargs = map_arg(node.kwargs, lambda a: env[a])
            target = cast(Callable[..., Any], node.target)  # call_function: an op overload
            env[node] = target(*args, **kwargs)

    first_input = next((n for n in placeholders if kind_of[n.name] == "input"), None)
    made: list[tuple[torch.Tensor, torch.fx.Node]] = []
    for node in boundary:
        value = env[node]
        same = next(
            (
                ph
                for v, ph in made
                if v.dtype == value.dtype and v.shape == value.shape and torch.equal(v, value)
            ),
            None,
        )
        if same is not None:
            for u in [u for u in node.users if u not in const]:
                u.replace_input_with(node, same)
            continue
        if first_input is not None:
            ctx = graph.inserting_before(first_input)
        else:
            ctx = (
                graph.inserting_after(placeholders[-1])
                if placeholders
                else graph.inserting_before()
            )
        with ctx:
            ph = graph.placeholder(f"c_folded_{len(made)}")
        ph.meta.update(
            {k: v for k, v in node.meta.items() if k in ("val", "tensor_meta", "stack_trace")}
        )
        non_const_users = [u for u in node.users if u not in const]
        for u in non_const_users:
            u.replace_input_with(node, ph)
        kind_of[ph.name] = "constant"
        weights[ph.name] = value.detach().contiguous()
        made.append((value, ph))

    # Remove now-dead constant nodes (asserts on constants included), newest first.
    for node in reversed(order):
        if not node.users:
            graph.erase_node(node)
    for node in placeholders:
        if node.name in foldable and not node.users:
            graph.erase_node(node)
            kind_of.pop(node.name, None)
            weights.pop(node.name, None)
    graph.lint()
