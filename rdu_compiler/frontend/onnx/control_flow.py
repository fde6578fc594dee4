"""``Scan`` / ``Loop`` unrolled and ``If`` with a constant condition inlined (torch-mlir has
no conversion for them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rdu_compiler.frontend.onnx.graph import node_attr

#: Scan / Loop bodies are unrolled up to this many iterations.
_MAX_UNROLL = 64


def _renamed(names: dict[str, str], name: str) -> str:
    """``name`` as the unrolled copy calls it (outer-scope names are kept)."""
    return names.get(name, name)


def _body_nodes(body: Any, prefix: str, bind: dict[str, str]) -> tuple[list[Any], dict[str, str]]:
    """Copies of a loop body's nodes for one iteration: body inputs bound to outer names
    (``bind``), names defined inside prefixed, outer-scope names kept. Returns the nodes and
    the map body name -> outer name (for the body's outputs)."""
    from onnx import numpy_helper

    inner = {o for n in body.node for o in n.output if o} | {i.name for i in body.initializer}
    names = dict(bind)
    for x in inner:
        names.setdefault(x, prefix + x)
    nodes = []
    for init in body.initializer:
        nodes.append(("init", numpy_helper.from_array(numpy_helper.to_array(init), names[init.name])))
    for n in body.node:
        m = type(n)()
        m.CopyFrom(n)
        m.name = prefix + (n.name or n.op_type)
        m.input[:] = [names.get(i, i) if i else "" for i in n.input]
        m.output[:] = [names[o] if o else "" for o in n.output]
        nodes.append(("node", m))
    return nodes, names


def unroll_loops(proto: Any) -> bool:
    """Unroll ``Scan`` (opset >= 9; sequence length from static shapes) and ``Loop`` (a
    constant trip count, a condition that stays true) of at most :data:`_MAX_UNROLL`
    iterations into plain nodes: torch-mlir has no conversion for either. Bodies with
    nested subgraphs are left alone, and so are stacked outputs before opset 13 (they are
    built with Unsqueeze, whose opset-1 form torch-mlir does not convert)."""
    import onnx
    from onnx import helper, numpy_helper

    graph = proto.graph
    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    inits = {i.name: i for i in graph.initializer}
    shapes: dict[str, list[int]] = {}
    for v in [*graph.input, *graph.value_info, *graph.output]:
        tt = v.type.tensor_type if v.type.WhichOneof("value") == "tensor_type" else None
        if tt is not None and tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            shapes[v.name] = [int(d.dim_value) for d in tt.shape.dim]
    for i in graph.initializer:
        shapes[i.name] = list(i.dims)
    new_nodes: list[Any] = []
    changed = False

    def const(value: Any, name: str) -> str:
        graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def axes_input(node_inputs: list[str], axes: list[int], name: str) -> dict[str, Any]:
        if version >= 13:
            node_inputs.append(const(np.array(axes, np.int64), name))
            return {}
        return {"axes": axes}

    for k, node in enumerate(graph.node):
        body = node_attr(node, "body")
        if node.op_type not in ("Scan", "Loop") or node.domain not in ("", "ai.onnx") or body is None or (node.op_type == "Scan" and version < 9):
            new_nodes.append(node)
            continue
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in body.node for a in n.attribute):
            new_nodes.append(node)
            continue
        prefix0 = f"{node.name or node.op_type}_{k}__"
        out: list[Any] = []
        if node.op_type == "Scan":
            m = int(node_attr(node, "num_scan_inputs"))
            n_state = len(node.input) - m
            xs = list(node.input[n_state:])
            in_axes = list(node_attr(node, "scan_input_axes", [0] * m))
            in_dirs = list(node_attr(node, "scan_input_directions", [0] * m))
            n_out = len(body.output) - n_state
            out_axes = list(node_attr(node, "scan_output_axes", [0] * n_out))
            out_dirs = list(node_attr(node, "scan_output_directions", [0] * n_out))
            if not xs or any(x not in shapes for x in xs):
                new_nodes.append(node)
                continue
            lengths = {shapes[x][a % len(shapes[x])] for x, a in zip(xs, in_axes, strict=True)}
            if len(lengths) != 1 or next(iter(lengths)) > _MAX_UNROLL or (n_out and version < 13):
                new_nodes.append(node)
                continue
            steps = next(iter(lengths))
            state = list(node.input[:n_state])
            per_step: list[list[str]] = [[] for _ in range(n_out)]
            for t in range(steps):
                prefix = f"{prefix0}{t}__"
                bind = dict(zip([b.name for b in body.input[:n_state]], state, strict=True))
                for j, (x, a, d) in enumerate(zip(xs, in_axes, in_dirs, strict=True)):
                    idx = const(np.array(steps - 1 - t if d else t, np.int64), f"{prefix}idx{j}")
                    elem = f"{prefix}elem{j}"
                    out.append(("node", helper.make_node("Gather", [x, idx], [elem], axis=a % len(shapes[x]))))
                    bind[body.input[n_state + j].name] = elem
                nodes, names = _body_nodes(body, prefix, bind)
                out += nodes
                state = [_renamed(names, o.name) for o in body.output[:n_state]]
                for c, o in enumerate(body.output[n_state:]):
                    per_step[c].append(_renamed(names, o.name))
            finals = list(node.output[:n_state])
            for name, value in zip(finals, state, strict=True):
                if name:
                    out.append(("node", helper.make_node("Identity", [value], [name])))
            for c, name in enumerate(node.output[n_state:]):
                if not name:
                    continue
                elems = per_step[c][::-1] if out_dirs[c] else per_step[c]
                axis = out_axes[c]
                stacked = []
                for t, e in enumerate(elems):
                    ins = [e]
                    kw = axes_input(ins, [axis], f"{prefix0}uaxes{c}_{t}")
                    stacked.append(f"{prefix0}u{c}_{t}")
                    out.append(("node", helper.make_node("Unsqueeze", ins, [stacked[-1]], **kw)))
                out.append(("node", helper.make_node("Concat", stacked, [name], axis=axis)))
        else:  # Loop
            trip = node.input[0] if node.input else ""
            cond = node.input[1] if len(node.input) > 1 else ""
            if not trip or trip not in inits:
                new_nodes.append(node)
                continue
            steps = int(np.asarray(numpy_helper.to_array(inits[trip])).reshape(-1)[0])
            cond_ok = not cond or (cond in inits and bool(np.asarray(numpy_helper.to_array(inits[cond])).reshape(-1)[0]))
            body_cond_in, body_cond_out = body.input[1].name, body.output[0].name
            passthrough = body_cond_out == body_cond_in or any(
                n.op_type == "Identity" and list(n.input) == [body_cond_in] and list(n.output) == [body_cond_out] for n in body.node
            )
            stacks = len(body.output) - 1 - (len(node.input) - 2)
            if steps < 1 or steps > _MAX_UNROLL or not cond_ok or not passthrough or (stacks and version < 13):
                new_nodes.append(node)
                continue
            n_state = len(node.input) - 2
            n_scan = len(body.output) - 1 - n_state
            state = list(node.input[2:])
            per_step = [[] for _ in range(n_scan)]
            for t in range(steps):
                prefix = f"{prefix0}{t}__"
                bind = {body.input[0].name: const(np.array(t, np.int64), f"{prefix}iter"),
                        body.input[1].name: const(np.array(True), f"{prefix}cond")}
                bind.update(zip([b.name for b in body.input[2:]], state, strict=True))
                nodes, names = _body_nodes(body, prefix, bind)
                out += nodes
                state = [_renamed(names, o.name) for o in body.output[1 : 1 + n_state]]
                for c, o in enumerate(body.output[1 + n_state :]):
                    per_step[c].append(_renamed(names, o.name))
            for name, value in zip(node.output[:n_state], state, strict=True):
                if name:
                    out.append(("node", helper.make_node("Identity", [value], [name])))
            for c, name in enumerate(node.output[n_state:]):
                if not name:
                    continue
                stacked = []
                for t, e in enumerate(per_step[c]):
                    ins = [e]
                    kw = axes_input(ins, [0], f"{prefix0}uaxes{c}_{t}")
                    stacked.append(f"{prefix0}u{c}_{t}")
                    out.append(("node", helper.make_node("Unsqueeze", ins, [stacked[-1]], **kw)))
                out.append(("node", helper.make_node("Concat", stacked, [name], axis=0)))
        for kind, item in out:
            if kind == "init":
                graph.initializer.append(item)
            else:
                new_nodes.append(item)
        changed = True
    if changed:
        del graph.node[:]
        graph.node.extend(new_nodes)
    return changed


def inline_constant_ifs(proto: Any) -> bool:
    """Replace each ``If`` whose condition is a constant by the nodes of the branch taken
    (internal names prefixed; the branch's outputs become the If's outputs)."""
    from onnx import numpy_helper

    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    nodes, changed = [], False
    for k, node in enumerate(graph.node):
        if node.op_type != "If" or node.domain not in ("", "ai.onnx") or node.input[0] not in inits:
            nodes.append(node)
            continue
        cond = bool(np.asarray(numpy_helper.to_array(inits[node.input[0]])).reshape(-1)[0])
        branch = node_attr(node, "then_branch" if cond else "else_branch")
        if branch is None or len(branch.output) != len(node.output):
            nodes.append(node)
            continue
        prefix = f"{node.name or 'If'}_{k}__"
        inner = {o for n in branch.node for o in n.output if o} | {i.name for i in branch.initializer}
        rename = {o.name: new for o, new in zip(branch.output, node.output, strict=True)}

        def name(x: str, inner: set[str] = inner, rename: dict[str, str] = rename, prefix: str = prefix) -> str:
            if x in rename:
                return rename[x]
            return prefix + x if x in inner else x

        for init in branch.initializer:
            t = numpy_helper.from_array(numpy_helper.to_array(init), name(init.name))
            graph.initializer.append(t)
        for n in branch.node:
            m = type(n)()
            m.CopyFrom(n)
            m.name = prefix + (n.name or n.op_type)
            m.input[:] = [name(i) if i else "" for i in n.input]
            m.output[:] = [name(o) if o else "" for o in n.output]
            nodes.append(m)
        # A branch output that is an outer value or input: pass it through.
        for o, new in zip(branch.output, node.output, strict=True):
            if o.name not in inner:
                from onnx import helper

                nodes.append(helper.make_node("Identity", [o.name], [new]))
        changed = True
    if changed:
        del graph.node[:]
        graph.node.extend(nodes)
    return changed
