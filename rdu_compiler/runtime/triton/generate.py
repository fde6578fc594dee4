"""Generate kernels.py, readable Triton source, from a fused or placed rdu program.

`generate(module)` groups the program's kernels (see `groups`), writes one `@triton.jit`
kernel per group and a launcher `run(weights, *inputs)` that allocates every tensor,
applies the layout ops as torch views / cat / pad and launches the kernels in program
order. The file needs only torch and triton: shapes, strides and constants are literals,
weights come from the caller (or `load_weights("weights.safetensors")`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Attribute, SSAValue

from rdu_compiler.dialects import rdu
from rdu_compiler.runtime.triton.exprs import ident, pow2_at_least, torch_dtype
from rdu_compiler.runtime.triton.groups.common import Env, Launch, Member
from rdu_compiler.runtime.triton.groups.loop_reduce import emit_loop_reduce
from rdu_compiler.runtime.triton.groups.matmul import MatmulGroup, emit_matmul_group, matmul_join
from rdu_compiler.runtime.triton.groups.rows import (
    RowGroup,
    emit_row_group,
    outputs_ok,
    reduction_shape,
    row_join,
)
from rdu_compiler.runtime.triton.groups.scan import emit_scan
from rdu_compiler.runtime.triton.launcher import Launcher
from rdu_compiler.runtime.triton.preamble import header
from rdu_compiler.runtime.triton.program import (
    FlatProgram,
    KernelInfo,
    Node,
    fail,
    fill_value,
    flatten,
    unfold_init_fills,
)
from rdu_compiler.runtime.triton.settings import TritonSettings, generation_defaults


@dataclass
class TritonSource:
    """The generated artifact.

    Attributes:
        text: the source of kernels.py.
        constants: dense constants of the program (name -> array) that `run` reads from
            `weights` next to the model's weights (saved into weights.safetensors).
        kernels: one entry per Triton kernel: its name and the rdu kernels it runs.
        arg_names / input_names: the program's arguments, and which are user inputs.
    """

    text: str
    constants: dict[str, np.ndarray]
    kernels: list[tuple[str, list[str]]]
    arg_names: list[str]
    input_names: list[str]
    rdu_kernels: int = 0
    # in-process only (benchmarks, references): the launches and what they read
    launches: list[Launch] = field(default_factory=list, repr=False)
    splats: dict[SSAValue, tuple[Any, Attribute]] = field(default_factory=dict, repr=False)
    virtual: dict[SSAValue, tuple[KernelInfo, int]] = field(default_factory=dict, repr=False)

    @property
    def fused_kernels(self) -> int:
        """Kernel launches per run."""
        return len(self.kernels)

    @property
    def distinct_kernels(self) -> int:
        """Kernels defined (layers that compute the same thing share one)."""
        return len({name for name, _ in self.kernels})


# --------------------------------------------------------------------------- planning


@dataclass
class Step:
    kind: str  # "launch" | "node"
    launch: Launch | None = None
    node: Node | None = None


@dataclass
class _Open:
    group: RowGroup | MatmulGroup
    nodes: set[int] = field(default_factory=set)
    order: int = 0


class Planner:
    """Groups kernels in program order (see `groups`) and orders the launches."""

    def __init__(self, prog: FlatProgram, settings: TritonSettings, env_factory: Any):
        self.sink: Any = None  # called with each step as soon as it is planned
        self.prog = prog
        self.settings = settings
        self.infos: dict[int, KernelInfo] = {}
        self.splats: dict[SSAValue, tuple[Any, Attribute]] = {}
        for v, c in prog.consts.items():
            if c.splat:
                self.splats[v] = (c.value, c.element)
        for n in prog.nodes:
            if n.kind == "kernel":
                info = KernelInfo(n)
                self.infos[n.index] = info
                fv = fill_value(info, prog.consts)
                if fv is not None:
                    self.splats[n.outs[0]] = (fv, info.result_elts[0])
            elif n.kind == "view" and n.ins[0] in self.splats:
                self.splats[n.outs[0]] = self.splats[n.ins[0]]
        self.virtual: dict[SSAValue, tuple[KernelInfo, int]] = {}
        self._find_copies()
        self.env = env_factory(self)
        self._steps: list[Step] = []
        self.open: list[_Open] = []
        self.owner: dict[SSAValue, _Open] = {}  # group value -> its open group
        self.counter = 0
        self.names: set[str] = set()

    # ---------------------------------------------------------------- copies

    def _find_copies(self) -> None:
        """Copy kernels (transpose, broadcast: the payload yields an input unchanged) whose
        results, through reshapes, are only read by kernels: never written; their readers
        load the copied tensor through the composed access pattern."""
        for info in self.infos.values():
            node = info.node
            if not info.is_map or info.n_init != 1 or info.n_cap or node.outs[0] in self.splats:
                continue
            y = info.block.last_op.operands[0]  # type: ignore[union-attr]
            if y not in info.block.args[: info.n_in] or len(list(info.block.ops)) != 1:
                continue
            j = info.block.args.index(y)
            if not outputs_ok(info, None):
                continue
            out = node.outs[0]
            aliases = [out]
            ok = out not in self.prog.outputs
            k = 0
            while ok and k < len(aliases):
                v = aliases[k]
                k += 1
                for u in self.prog.users.get(v, []):
                    un = self.prog.nodes[u]
                    if un.kind == "view" and un.op.mode.data == "reshape" and un.outs[0] not in self.prog.outputs:  # type: ignore[attr-defined]
                        aliases.append(un.outs[0])
                        continue
                    if un.kind != "kernel":
                        ok = False
                        break
                    uinfo = self.infos[u]
                    for pos, x in enumerate(un.ins):
                        if x is not v:
                            continue
                        reads = pos < uinfo.n_in + uinfo.n_init and (uinfo.used[pos] or (pos >= uinfo.n_in and uinfo.red))
                        if pos >= uinfo.n_in + uinfo.n_init or (reads and pos >= uinfo.n_in):
                            ok = False  # a gathered table or an accumulator: needs memory
            if ok:
                for a in aliases:
                    self.virtual[a] = (info, j)

    def _sources(self, v: SSAValue) -> list[SSAValue]:
        """The materialized tensors a read of `v` touches (through virtual copies)."""
        if v not in self.virtual:
            return [v]
        info, j = self.virtual[v]
        return self._sources(info.ins[j])

    # ---------------------------------------------------------------- helpers

    def _emit(self, step: Step) -> None:
        self._steps.append(step)
        if self.sink is not None:
            self.sink(step)

    def _reads(self, info: KernelInfo) -> list[int]:
        """Operand positions whose values the kernel really reads (used block args)."""
        out = []
        for j in range(info.n_in + info.n_init):
            if info.used[j] or (j >= info.n_in and info.red):
                out.append(j)
        out.extend(range(info.n_in + info.n_init, info.n_in + info.n_init + info.n_cap))
        return out

    def _live(self, node: Node) -> bool:
        return any(self.prog.users.get(v) or v in self.prog.outputs for v in node.outs)

    def _name(self, label: str, n: int) -> str:
        base = label if n == 1 else f"{label}_fused{n}"
        return ident(base, self.names)

    # ---------------------------------------------------------------- main loop

    def plan(self) -> list[Step]:
        for node in self.prog.nodes:
            if node.kind in ("const", "empty"):
                continue
            if node.kind == "kernel":
                self._kernel(node)
            elif node.outs and node.outs[0] in self.virtual:
                continue  # a reshape of a copy that is never written
            elif node.kind == "view" and node.op.mode.data == "reshape" and node.ins[0] in self.owner:  # type: ignore[attr-defined]
                g = self.owner[node.ins[0]]
                src = node.ins[0]
                g.group.aliases[node.outs[0]] = src
                g.group.values[node.outs[0]] = g.group.values[src]
                g.nodes.add(node.index)
                self.owner[node.outs[0]] = g
            else:
                self._close_for(node.ins)
                self._emit(Step("node", node=node))
        for g in list(self.open):
            self._close(g)
        return self._steps

    def _kernel(self, node: Node) -> None:
        info = self.infos[node.index]
        if node.outs[0] in self.splats and info.is_map:
            return  # a fill: its constant is inlined where it is read
        if node.outs[0] in self.virtual or not self._live(node):
            return  # a copy its readers do themselves, or dead
        reads = self._reads(info)
        for j in list(reads):
            v = node.ins[j]
            if v in self.virtual:  # the copied tensor must be in memory before this kernel
                reads.remove(j)
                self._close_for(self._sources(v))
        caps_from = {node.ins[j] for j in reads if j >= info.n_in + info.n_init}
        groups: list[_Open] = []
        for j in reads:
            g = self.owner.get(node.ins[j])
            if g is not None and g not in groups:
                groups.append(g)
        # join the group whose values it reads are largest (the others are written first)
        size = lambda g: max(math.prod(rdu.shape_of(node.ins[j].type)) for j in reads if self.owner.get(node.ins[j]) is g)  # noqa: E731
        for g in sorted(groups, key=lambda g: (-size(g), -g.order)):
            if any(self.owner.get(v) is g for v in caps_from):
                continue
            greads = [j for j in reads if self.owner.get(node.ins[j]) is g]
            joined = self._join_check(g, info, greads)
            if joined is None:
                continue
            for other in groups:
                if other is not g:
                    self._close(other)
            self._join(g, info, joined)
            return
        for g in groups:
            self._close(g)
        self._start(info)

    def _join_check(self, g: _Open, info: KernelInfo, greads: list[int]) -> tuple[str, int | None] | None:
        grp = g.group
        if isinstance(grp, RowGroup):
            return row_join(grp, info, greads, self.settings.max_row)
        return ("row", None) if matmul_join(grp, info, greads) else None

    def _join(self, g: _Open, info: KernelInfo, joined: tuple[str, int | None]) -> None:
        grp = g.group
        kind, n = joined
        if isinstance(grp, RowGroup):
            grp.n = n
            grp.members.append(Member(info, kind))
            for r in info.results:
                grp.values[r] = "stat" if info.red or kind == "stat" else "row"
        else:
            grp.epilogue.append(info)
            for r in info.results:
                grp.values[r] = "row"
        g.nodes.add(info.node.index)
        for r in info.results:
            self.owner[r] = g

    def _start(self, info: KernelInfo) -> None:
        if info.kind == rdu.Pattern.SCAN:
            name = self._name(info.label, 1)
            self._emit(Step("launch", emit_scan(info, name, self.env, self.settings.max_row)))
            return
        grp: RowGroup | MatmulGroup
        if info.dot is not None:
            grp = MatmulGroup(info)
            grp.values[info.results[0]] = "row"
        elif info.is_map:
            grp = RowGroup(info.numel)
            grp.members.append(Member(info, "row"))
            for r in info.results:
                grp.values[r] = "row"
        else:
            shape = reduction_shape(info)
            if shape is None or pow2_at_least(shape[1]) > self.settings.max_row or not outputs_ok(info, shape[1]):
                name = self._name(info.label, 1)
                self._emit(Step("launch", emit_loop_reduce(info, name, self.env)))
                return
            rows, n = shape
            grp = RowGroup(rows * n, n)
            grp.members.append(Member(info, "row"))
            for r in info.results:
                grp.values[r] = "stat"
        self.counter += 1
        g = _Open(grp, {info.node.index}, self.counter)
        self.open.append(g)
        for r in info.results:
            self.owner[r] = g

    def _close_for(self, values: list[SSAValue]) -> None:
        for v in values:
            g = self.owner.get(v)
            if g is not None:
                self._close(g)

    def _close(self, g: _Open) -> None:
        if g not in self.open:
            return
        self.open.remove(g)
        grp = g.group
        values = list(grp.values)
        for v in values:
            self.owner.pop(v, None)
        needed: list[SSAValue] = []
        alias_nodes: list[Node] = []
        for v in values:
            outside = [u for u in self.prog.users.get(v, []) if u not in g.nodes] or (v in self.prog.outputs)
            if not outside:
                continue
            root = v
            while root in grp.aliases:
                root = grp.aliases[root]
            if root not in needed:
                needed.append(root)
        # reshapes whose results are read outside the group: re-emitted after the launch
        for idx in sorted(g.nodes):
            node = self.prog.nodes[idx]
            if node.kind == "view":
                out = node.outs[0]
                if [u for u in self.prog.users.get(out, []) if u not in g.nodes] or out in self.prog.outputs:
                    alias_nodes.append(node)
                    chain = out
                    while chain in grp.aliases:
                        chain = grp.aliases[chain]
                    if chain not in needed:
                        needed.append(chain)
        # keep every view in a chain that leads to a needed alias
        keep: set[int] = {n.index for n in alias_nodes}
        changed = True
        while changed:
            changed = False
            for idx in sorted(g.nodes):
                node = self.prog.nodes[idx]
                if node.kind == "view" and idx not in keep:
                    if any(node.outs[0] in self.prog.nodes[k].ins for k in keep):
                        keep.add(idx)
                        changed = True
        needed = [v for v in needed if v not in grp.aliases]
        if isinstance(grp, MatmulGroup):
            name = self._name(grp.anchor.label, 1 + len(grp.epilogue))
            launch = emit_matmul_group(grp, name, self.env, needed)
        else:
            name = self._name(grp.anchor.label, len(grp.members))
            launch = emit_row_group(grp, name, self.env, needed)
        self._emit(Step("launch", launch))
        for idx in sorted(keep):
            self._emit(Step("node", node=self.prog.nodes[idx]))


def generate(
    module: ModuleOp,
    arg_names: list[str] | None = None,
    input_names: list[str] | None = None,
    settings: TritonSettings | None = None,
    title: str = "model",
) -> TritonSource:
    """Generate kernels.py for a fused (-O1, after rdu-fuse) or placed rdu program.

    Args:
        module: the rdu program (one function; sections allowed).
        arg_names: one name per function argument (weights and inputs); default arg0...
        input_names: the names among `arg_names` that are user inputs, in the order of
            `run`'s positional inputs; default: every argument is an input.

    Raises:
        CompileError: a kernel, payload op or layout op the generator cannot express,
            named in the message.
    """
    settings = settings or generation_defaults()
    prog = flatten(unfold_init_fills(module))
    arg_names = list(arg_names) if arg_names is not None else [f"arg{i}" for i in range(len(prog.args))]
    if len(arg_names) != len(prog.args):
        raise fail(f"{len(arg_names)} argument names for {len(prog.args)} arguments")
    input_names = list(input_names) if input_names is not None else list(arg_names)
    holder: dict[str, Launcher] = {}

    def env_factory(planner: Planner) -> Env:
        return Env(
            layout=lambda v: holder["l"].layout(v),
            splat=lambda v: planner.splats.get(v),
            settings=settings,
            virtual=lambda v: planner.virtual.get(v),
        )

    planner = Planner(prog, settings, env_factory)
    launcher = Launcher(prog, planner, arg_names, input_names)
    holder["l"] = launcher
    launcher.taken.update({"dev", "inputs", "weights"})
    launcher.bind_args()
    launches: list[Launch] = []

    distinct: dict[str, Launch] = {}  # kernel text (name aside) -> the launch that defines it

    def sink(st: Step) -> None:  # the launcher follows the plan step by step, so the layout
        if st.kind == "launch":  # of every tensor a kernel reads is known when it is written
            la = st.launch
            assert la is not None
            key = _structure(la)
            first = distinct.setdefault(key, la)
            if first is not la:  # the same kernel again (another layer): one definition, one compile
                la.source = ""
                la.name = first.name
            launches.append(la)
            launcher.launch(la)
        else:
            assert st.node is not None
            launcher.node(st.node)

    planner.sink = sink
    planner.plan()
    launcher.finish()
    n_rdu = sum(1 for n in prog.nodes if n.kind == "kernel")
    doc = _module_doc(title, launches, n_rdu, arg_names, input_names)
    body = [header(doc), "", f"ARG_NAMES = {arg_names!r}", f"INPUT_NAMES = {input_names!r}", ""]
    in_specs = []
    for name in input_names:
        a = prog.args[arg_names.index(name)]
        in_specs.append((rdu.shape_of(a.type), torch_dtype(rdu.element_type_of(a.type))))
    body.append("INPUT_SPECS = [" + ", ".join(f"({s!r}, {d})" for s, d in in_specs) + "]")
    body.append("")
    for la in launches:
        if la.source:
            body.append("")
            body.append(la.source)
    body.append("")
    body.append("def run(weights, *inputs):")
    body.append('    """Run the program: `weights` maps argument names to tensors (see ARG_NAMES and')
    body.append('    `load_weights`), `inputs` are the model inputs (INPUT_NAMES). Returns the flat outputs."""')
    body.append(f"    if len(inputs) != {len(input_names)}:")
    body.append(f'        raise ValueError(f"the program takes {len(input_names)} input(s), got {{len(inputs)}}")')
    body.append('    dev = inputs[0].device if inputs else torch.device("cuda" if torch.cuda.is_available() and not _INTERPRET else "cpu")')
    body.extend(launcher.lines)
    body.append(_MAIN)
    text = "\n".join(body) + "\n"
    return TritonSource(text, launcher.constants, [(la.name, la.members) for la in launches], arg_names, input_names,
                        n_rdu, launches, dict(planner.splats), dict(planner.virtual))


def _structure(la: Launch) -> str:
    """A kernel's text without its name, docstring and comments (which name rdu kernels)."""
    lines = []
    for line in la.source.replace(la.name, "KERNEL").splitlines():
        text = line.strip()
        if text.startswith(('"""', "#")):
            continue
        lines.append(line.split("  #")[0])
    return "\n".join(lines)


def _module_doc(title: str, launches: list[Launch], n_rdu: int, arg_names: list[str], input_names: list[str]) -> str:
    return (
        f"Triton kernels for {title}, generated by rdu_compiler from the rdu program.\n\n"
        f"{len(launches)} Triton kernels run the program's {n_rdu} rdu kernels (fills are folded\n"
        "into their readers; elementwise consumers, row reductions and matmul epilogues are\n"
        "fused). Needs only torch and triton. Without a GPU it runs on Triton's interpreter.\n\n"
        "    import torch, kernels\n"
        "    weights = kernels.load_weights('weights.safetensors', 'cuda')\n"
        "    outputs = kernels.run(weights, *inputs)   # tensors on the GPU, flat tuple\n\n"
        "`python kernels.py` runs it once on example inputs (zeros/random) and prints timings.\n"
    )


_MAIN = '''

def _example_inputs(device):
    out = []
    for shape, dtype in INPUT_SPECS:
        if dtype.is_floating_point:
            out.append(torch.randn(shape, device=device).to(dtype))
        else:
            out.append(torch.zeros(shape, dtype=dtype, device=device))
    return out


if __name__ == "__main__":
    import pathlib
    import time

    device = "cuda" if torch.cuda.is_available() and not _INTERPRET else "cpu"
    w = load_weights(pathlib.Path(__file__).with_name("weights.safetensors"), device)
    x = _example_inputs(device)
    t0 = time.perf_counter()
    outs = run(w, *x)
    if device == "cuda":
        torch.cuda.synchronize()
    print(f"first run (compile + autotune): {time.perf_counter() - t0:.3f} s on {device}")
    t0 = time.perf_counter()
    outs = run(w, *x)
    if device == "cuda":
        torch.cuda.synchronize()
    print(f"second run: {(time.perf_counter() - t0) * 1e3:.3f} ms")
    for o in outs:
        print(tuple(o.shape), o.dtype)
'''

