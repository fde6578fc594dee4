"""The launcher of a generated kernels.py: `run(weights, *inputs)` allocates every tensor,
applies the layout ops as torch views / cat / pad and launches the kernels in program
order (`generate` drives it step by step along the `Planner`'s plan)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from xdsl.dialects import tensor
from xdsl.ir import SSAValue

from rdu_compiler.dialects import rdu
from rdu_compiler.ir import int_values
from rdu_compiler.runtime.triton.exprs import ident, py_literal, torch_dtype
from rdu_compiler.runtime.triton.groups.common import Launch
from rdu_compiler.runtime.triton.program import (
    FlatProgram,
    Node,
    fail,
    row_major,
)

if TYPE_CHECKING:
    from rdu_compiler.runtime.triton.generate import Planner


class Launcher:
    """The `run(weights, *inputs)` function: tensors, layout ops and launches in order."""

    def __init__(self, prog: FlatProgram, planner: Planner, arg_names: list[str], input_names: list[str]):
        self.prog = prog
        self.planner = planner
        self.lines: list[str] = []
        self.var: dict[SSAValue, str] = {}
        self.layouts: dict[SSAValue, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        self.taken: set[str] = set()
        self.constants: dict[str, np.ndarray] = {}
        self.arg_names = arg_names
        self.input_names = input_names
        self.count = 0
        self.checks: list[tuple[str, list[tuple[str, str]]]] = []  # (flag tensor variable, checks) per launch

    def layout(self, v: SSAValue) -> tuple[tuple[int, ...], tuple[int, ...]]:
        if v not in self.layouts:
            self.need(v)
        return self.layouts[v]

    def _new(self, v: SSAValue, stem: str = "t") -> str:
        self.count += 1
        name = ident(f"{stem}{self.count}", self.taken)
        self.var[v] = name
        return name

    def emit(self, text: str) -> None:
        self.lines.append("    " + text)

    def bind_args(self) -> None:
        by_input = {n: i for i, n in enumerate(self.input_names)}
        for i, a in enumerate(self.prog.args):
            name = self.arg_names[i]
            shape = rdu.shape_of(a.type)
            dt = torch_dtype(rdu.element_type_of(a.type))
            if not self.prog.users.get(a) and a not in self.prog.outputs:
                continue
            var = ident(name, self.taken)
            self.var[a] = var
            self.layouts[a] = (shape, row_major(shape))
            if name in by_input:
                src = f"inputs[{by_input[name]}]"
            else:
                src = f"weights[{name!r}]"
            self.emit(f"{var} = _arg({src}, {name!r}, {shape!r}, {dt}, dev)")

    def need(self, v: SSAValue) -> str:
        """The launcher variable of `v`, materializing constants and splats on demand."""
        if v in self.var:
            return self.var[v]
        shape = rdu.shape_of(v.type)
        elt = rdu.element_type_of(v.type)
        dt = torch_dtype(elt)
        c = self.prog.consts.get(v)
        if c is not None and not c.splat:
            name = f"_const{len(self.constants)}"
            self.constants[name] = np.asarray(c.value)
            var = self._new(v, "c")
            self.emit(f"{var} = _arg(weights[{name!r}], {name!r}, {shape!r}, {dt}, dev)  # a dense constant")
        elif v in self.planner.splats:
            value = self.planner.splats[v][0]
            var = self._new(v, "c")
            self.emit(f"{var} = torch.full({shape!r}, {py_literal(value)}, dtype={dt}, device=dev)")
        elif isinstance(v.owner, tensor.EmptyOp):
            var = self._new(v)
            self.emit(f"{var} = torch.empty({shape!r}, dtype={dt}, device=dev)")
        else:
            raise fail(f"internal: value {v} is read before it is computed")
        self.layouts[v] = (shape, row_major(shape))
        return var

    def launch(self, launch: Launch) -> None:
        outs = set(launch.outputs)
        args = []
        for v in launch.args:
            if v in outs:
                continue
            args.append(self.need(v))
        for v in launch.outputs:
            shape = rdu.shape_of(v.type)
            dt = torch_dtype(rdu.element_type_of(v.type))
            var = self._new(v)
            self.layouts[v] = (shape, row_major(shape))
            self.emit(f"{var} = torch.empty({shape!r}, dtype={dt}, device=dev)")
        call = [self.var[v] for v in launch.args]
        if launch.checks:
            flags = ident(f"chk{len(self.checks) + 1}", self.taken)
            self.emit(f"{flags} = torch.zeros({len(launch.checks)}, dtype=torch.int32, device=dev)")
            self.checks.append((flags, launch.checks))
            call.append(flags)
        self.emit(f"# {', '.join(launch.members)}")
        self.emit(f"{launch.name}[{launch.grid}]({', '.join(call)})")

    def node(self, node: Node) -> None:
        op = node.op
        out = node.outs[0]
        shape = rdu.shape_of(out.type)
        if isinstance(op, rdu.ViewOp):
            src = self.need(node.ins[0])
            sshape, sstrides = self.layout(node.ins[0])
            meta = torch.empty_strided(sshape, sstrides, device="meta")
            if op.mode.data == "reshape":
                expr = f"{src}.reshape({shape!r})"
                res = meta.reshape(shape)
            else:
                offsets = op.offsets.get_values()  # type: ignore[union-attr]
                sizes = op.sizes.get_values()  # type: ignore[union-attr]
                strides = op.strides.get_values()  # type: ignore[union-attr]
                idx = tuple(slice(o, o + (n - 1) * s + 1, s) for o, n, s in zip(offsets, sizes, strides, strict=True))
                text = ", ".join(f"{s.start}:{s.stop}" + (f":{s.step}" if s.step != 1 else "") for s in idx)
                res = meta[idx]
                expr = f"{src}[{text}]"
                if tuple(res.shape) != shape:
                    expr += f".reshape({shape!r})"
                    res = res.reshape(shape)
            var = self._new(out)
            self.layouts[out] = (shape, tuple(res.stride()))
            self.emit(f"{var} = {expr}")
        elif isinstance(op, rdu.ConcatOp):
            parts = ", ".join(self.need(v) for v in node.ins)
            var = self._new(out)
            self.layouts[out] = (shape, row_major(shape))
            self.emit(f"{var} = torch.cat([{parts}], dim={op.dim.value.data})")
        elif isinstance(op, rdu.PadOp):
            src = self.need(node.ins[0])
            value = self.prog.consts.get(node.ins[1])
            if value is None or not value.splat:
                raise fail("rdu.pad with a padding value that is not a constant has no launcher form")
            low, high = int_values(op.low), int_values(op.high)
            pads: list[int] = []
            for lo, hi in zip(reversed(low), reversed(high), strict=True):
                pads += [lo, hi]
            var = self._new(out)
            self.layouts[out] = (shape, row_major(shape))
            self.emit(f"{var} = torch.nn.functional.pad({src}, {pads!r}, value={py_literal(value.value)})")
        else:
            raise fail(f"op '{op.name}' has no launcher form")

    def finish(self) -> None:
        outs = [self.need(v) if v not in self.prog.args else self.var[v] for v in self.prog.outputs]
        if self.checks:  # one device-to-host copy per run, after every launch
            self.emit(f"_raise_failed_checks([{', '.join(f'({f}, {m!r})' for f, m in self.checks)}])")
        self.emit(f"return ({', '.join(outs)}{',' if len(outs) == 1 else ''})")
