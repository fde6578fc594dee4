"""The functional emulator: run a placed rdu program section by section, tile by tile.

It executes what the compiler decided, not the original graph: each `rdu.section` in
program order, each kernel in it tile by tile at its `tile` sizes (see
`interpreters.kernel.KernelExecutor`), streams between kernels kept on chip, `rdu.load` /
`rdu.store` / gathers counted as off-chip bytes of their tier. Before running it
verifies the module (the rdu verifiers, against the fabric the module names) and checks
every section against the fabric it runs on: it refuses a program whose section uses
more units than the fabric has, whose buffer claims PMUs other than the fabric's or
exceeds its PMUs, or whose placement is off the grid or puts two units on one site.
A run's trace (one track per kernel, modelled time) is written by `runtime.trace`.

A run's values live in an `Env`: every SSA value of the function is numbered once per
program (`number_values`), and each section is prepared once into steps over those
numbers, so the run loops index a list instead of hashing xDSL values.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from xdsl.dialects import arith, func, tensor
from xdsl.dialects.builtin import DenseIntOrFPElementsAttr, ModuleOp
from xdsl.ir import Operation, SSAValue
from xdsl.utils.exceptions import VerifyException

from rdu_compiler.dialects import rdu
from rdu_compiler.dtypes import numpy_dtype
from rdu_compiler.errors import EmulatorError, RduError
from rdu_compiler.fabric import Fabric
from rdu_compiler.interpreters.kernel import Empty, KernelExecutor
from rdu_compiler.interpreters.kernel_fast import PreparedKernelExecutor
from rdu_compiler.ir import int_values
from rdu_compiler.kernel.traffic import follow_tiers, gather_tier
from rdu_compiler.passes.common import FABRIC_ATTR


@dataclass
class SectionStats:
    """Measured traffic of one section (bytes) and its tiles."""

    name: str
    hbm_bytes: int = 0
    ddr_bytes: int = 0
    pmu_bytes: dict[str, int] = field(default_factory=dict)  # per kernel
    tiles: dict[str, int] = field(default_factory=dict)  # per kernel
    rows_read: dict[str, tuple[int, int]] = field(default_factory=dict)  # tiered row gather -> (HBM rows, DDR rows)
    wall_s: float = 0.0


@dataclass
class EmulatorStats:
    """What a run moved and executed, summed over sections."""

    sections: list[SectionStats] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def hbm_bytes(self) -> int:
        return sum(s.hbm_bytes for s in self.sections)

    @property
    def ddr_bytes(self) -> int:
        return sum(s.ddr_bytes for s in self.sections)

    @property
    def tiles(self) -> int:
        return sum(sum(s.tiles.values()) for s in self.sections)

    @property
    def rows_read(self) -> dict[str, tuple[int, int]]:
        """Per row gather `rdu-tier-rows` split: (rows read from HBM, rows read from DDR),
        counted from the actual row numbers."""
        return {k: v for s in self.sections for k, v in s.rows_read.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "hbm_bytes": self.hbm_bytes,
            "ddr_bytes": self.ddr_bytes,
            "tiles": self.tiles,
            **({"rows_read": {k: {"hbm": h, "ddr": d} for k, (h, d) in self.rows_read.items()}} if self.rows_read else {}),
            "wall_s": self.wall_s,
            "sections": [
                {"name": s.name, "hbm_bytes": s.hbm_bytes, "ddr_bytes": s.ddr_bytes, "tiles": s.tiles, "wall_s": s.wall_s}
                for s in self.sections
            ],
        }


class Env:
    """The values of one run: one list entry per SSA value of the function.

    Every value the run can bind (the function's arguments, the results of its ops and of
    the ops in its sections) is numbered once per program (`slot`: value -> index into
    `vals`); the section loop reads and writes `vals` by those numbers. `env[v]` and
    `env[v] = x` take the value itself (for the top-level ops, `runtime.node`,
    `runtime.kloop`). Raises KeyError for a value of another function."""

    __slots__ = ("slot", "vals")

    def __init__(self, slot: dict[SSAValue, int]):
        self.slot = slot
        self.vals: list[Any] = [None] * len(slot)

    def __getitem__(self, v: SSAValue) -> Any:
        return self.vals[self.slot[v]]

    def __setitem__(self, v: SSAValue, x: Any) -> None:
        self.vals[self.slot[v]] = x


def number_values(fn: func.FuncOp) -> dict[SSAValue, int]:
    """Every value a run of `fn` binds, numbered: its arguments, its ops' results, and the
    block arguments and op results inside its sections (not inside kernel payloads)."""
    slot: dict[SSAValue, int] = {}

    def block(b: Any) -> None:
        for a in b.args:
            slot.setdefault(a, len(slot))
        for op in b.ops:
            for r in op.results:
                slot.setdefault(r, len(slot))
            if isinstance(op, rdu.SectionOp):
                block(op.body.block)

    block(fn.body.block)
    return slot


class Emulator:
    """Compiled once per program; `run` may be called many times."""

    def __init__(self, module: ModuleOp, fabric: Fabric, fn: func.FuncOp | None = None, prepared: bool = True):
        """`fn`: the function to run (one stage program of a pipelined module, see
        `runtime.stages`); by default the module's only function. Its `rdu.send` /
        `rdu.recv` go through `self.channels` (channel id -> array), which the caller shares
        between the stages. `prepared`: run kernels with `PreparedKernelExecutor` (the
        per-tile bookkeeping done once; the same values, bit for bit); False runs the
        general `KernelExecutor`.

        Raises: EmulatorError: the module does not verify, names a fabric other than
        `fabric`, or breaks a capacity or placement rule of `fabric`."""
        try:
            module.verify()
            named = rdu.module_fabric(module)
        except VerifyException as e:
            raise EmulatorError(f"the program does not verify, so the emulator refuses it: {e}") from e
        self.module = module
        self.fabric = fabric
        fns = [op for op in module.ops if isinstance(op, func.FuncOp)]
        if fn is None and len(fns) != 1:
            raise EmulatorError(f"expected one function in the program, found {len(fns)} (a pipelined program "
                                "runs on runtime.stages.StagedEmulator)")
        self.fn = fn if fn is not None else fns[0]
        self.slot = number_values(self.fn)  # value -> its index in a run's `Env`
        self.channels: dict[int, Any] = {}
        self.executors: dict[rdu.KernelOp, KernelExecutor] = {}
        self._steps: dict[rdu.SectionOp, list[tuple[Any, ...]]] = {}
        self._constants: dict[Operation, Any] = {}
        self._kept: dict[int, Any] = {}  # the same values by result number (what the run loops look up)
        self._arg_types: list[tuple[int, int, tuple[int, ...], np.dtype[Any]]] | None = None
        self._top: list[tuple[int, Operation, Any]] = []
        self._views: dict[Operation, tuple[tuple[slice, ...] | None, tuple[int, ...]]] = {}
        from rdu_compiler.runtime.kloop import LoopedSections

        try:
            self.looped = LoopedSections(self.fn)  # kernel loops: iterations >= 1 run the body's programs
        except RduError as e:
            raise EmulatorError(str(e)) from e
        for op in self.fn.body.block.ops:
            if isinstance(op, rdu.KernelOp):
                raise EmulatorError(
                    f"kernel '{op.label}' is outside any rdu.section; the emulator runs placed programs "
                    "(run rdu-section, rdu-allocate, rdu-place)"
                )
            if isinstance(op, rdu.SectionOp):
                self._check_section(op)
                for k in op.kernels() if op not in self.looped else ():
                    self.executors[k] = PreparedKernelExecutor(k) if prepared else KernelExecutor(k)
                    # gathers are charged at their tier's access granularity (kernel.traffic.gathered_bytes)
                    self.executors[k].gather_burst = getattr(fabric, gather_tier(k)).burst_bytes
                    if k.hot_rows is not None:  # rdu-tier-rows: rows >= hot_rows are read from DDR
                        self.executors[k].gather_split = (k.hot_rows.value.data, fabric.ddr.burst_bytes)
        if named is not None and _comparable(named) != _comparable(fabric):  # after the sections: their reasons are sharper
            raise EmulatorError(
                f"the program was compiled for fabric '{named.name}' ({module.attributes[FABRIC_ATTR]}) but the "
                f"emulator was given fabric '{fabric.name}' ({fabric.source}); run it on the fabric it was compiled for"
            )

    def _check_section(self, section: rdu.SectionOp) -> None:
        name = section.sym_name.data
        try:
            rdu.verify_against_fabric(section, self.fabric)
        except VerifyException as e:
            raise EmulatorError(f"{e}; the emulator refuses the program") from e
        kernels = section.kernels()
        pcus = sum(k.pcus.value.data if k.pcus else 0 for k in kernels)
        pmus = sum(k.total_pmus for k in kernels)
        if any(k.pcus is None or k.buffers is None for k in kernels):
            raise EmulatorError(f"section '{name}': kernels without units; run rdu-allocate and rdu-place first")
        if pcus > self.fabric.num_pcus or pmus > self.fabric.num_pmus:
            raise EmulatorError(
                f"section '{name}' needs {pcus} PCUs / {pmus} PMUs but fabric '{self.fabric.name}' has "
                f"{self.fabric.num_pcus} / {self.fabric.num_pmus}; the emulator refuses it"
            )

    def run(self, args: list[np.ndarray]) -> tuple[list[np.ndarray], EmulatorStats]:
        """Run the program on `args` (one array per function argument, in order).

        Raises:
            EmulatorError: wrong arguments, a broken capacity rule, a failed runtime check.
        """
        from rdu_compiler.passes.shard_layout import module_tp

        if module_tp(self.module) > 1:
            raise EmulatorError(
                f"the program is sharded for tp = {module_tp(self.module)} sockets (rdu-shard); run it on the "
                "node emulator (rdu_compiler.runtime.node.NodeEmulator), which runs every socket's program"
            )
        block = self.fn.body.block
        env = self.bind(args)
        if not self._top:  # (kind, op, its result's or operands' numbers): 0 section, 1 constant, 2 return, 3 other
            for op in block.ops:
                if isinstance(op, rdu.SectionOp):
                    self._top.append((0, op, None))
                elif isinstance(op, arith.ConstantOp | tensor.EmptyOp):
                    self._top.append((1, op, self.slot[op.results[0]]))
                elif isinstance(op, func.ReturnOp):
                    self._top.append((2, op, [self.slot[v] for v in op.operands]))
                else:
                    self._top.append((3, op, None))
        stats = EmulatorStats()
        start = time.perf_counter()
        outputs: list[np.ndarray] = []
        vals = env.vals
        for kind, op, where in self._top:
            if kind == 0:
                stats.sections.append(self.section(op, env))  # type: ignore[arg-type]
            elif kind == 1:  # constants and empty tensors, kept from the first run
                value = self._kept.get(where)
                if value is None:
                    self._run_plain(op, env)
                    self._kept[where] = vals[where]
                else:
                    vals[where] = value
            elif kind == 2:
                outputs = [np.asarray(vals[i]) for i in where]
                outputs = [o if o.flags.writeable else o.copy() for o in outputs]  # constants are kept between runs
            else:
                self._run_plain(op, env)
        stats.wall_s = time.perf_counter() - start
        return outputs, stats

    def bind(self, args: list[np.ndarray]) -> Env:
        """The environment with the function's arguments bound to `args` (shapes checked,
        dtypes converted as `run` does).

        Raises:
            EmulatorError: a wrong number of arguments, a wrong shape, an inexact conversion.
        """
        if self._arg_types is None:  # (index, slot, shape, dtype) per argument
            self._arg_types = [(a.index, self.slot[a], rdu.shape_of(a.type), numpy_dtype(rdu.element_type_of(a.type)))
                               for a in self.fn.body.block.args]
        if len(args) != len(self._arg_types):
            raise EmulatorError(f"the program takes {len(self._arg_types)} arguments, got {len(args)}")
        env = Env(self.slot)
        vals = env.vals
        for v, (index, where, want, dtype) in zip(args, self._arg_types, strict=True):
            shape = v.shape if type(v) is np.ndarray else tuple(np.shape(v))
            if shape != want:
                raise EmulatorError(f"argument {index}: shape {np.shape(v)} but the program expects {want}")
            vals[where] = v if type(v) is np.ndarray and v.dtype == dtype else _argument(index, v, dtype)
        return env

    def section(self, section: rdu.SectionOp, env: Env) -> SectionStats:
        """Run one function-level section in `env` (a looped iteration as its body's program)."""
        if section in self.looped:
            st = self.looped.run(self._run_section, section, env)
            st.name = section.sym_name.data
            return st
        return self._run_section(section, env)

    def _run_section(self, section: rdu.SectionOp, env: Env) -> SectionStats:
        st = SectionStats(section.sym_name.data)
        t0 = time.perf_counter()
        steps = self._steps.get(section)
        if steps is None:
            steps = self._steps[section] = self._prepare_section(section)
        vals = env.vals
        hbm = ddr = 0
        pmu_bytes, tiles = st.pmu_bytes, st.tiles
        for step in steps:
            kind = step[0]
            if kind == 0:  # kernel
                _, ex, ins, inits, caps, outs, hbm_read, ddr_read, gather_ddr, label = step
                results, ks = ex.run([vals[i] for i in ins], [vals[i] for i in inits], [vals[i] for i in caps])
                for r, arr in zip(outs, results, strict=True):
                    vals[r] = arr
                ob = ks.operand_bytes
                for i in hbm_read:
                    hbm += ob[i]
                for i in ddr_read:
                    ddr += ob[i]
                if ks.gathered_bytes:
                    if gather_ddr:
                        ddr += ks.gathered_bytes
                    else:
                        hbm += ks.gathered_bytes
                if ks.cold_gathered_bytes:
                    ddr += ks.cold_gathered_bytes
                if ks.rows_read is not None:
                    st.rows_read[label] = ks.rows_read
                pmu_bytes[label] = sum(ob) + ks.result_bytes + ks.pmu_probe_bytes
                tiles[label] = ks.tiles
            elif kind == 1:  # load, yield: values pass through
                for r, v in zip(step[2], step[1], strict=True):
                    vals[r] = vals[v]
            elif kind == 2:  # store
                arr = vals[step[1]]
                vals[step[2]] = arr
                if step[3]:
                    ddr += arr.nbytes
                else:
                    hbm += arr.nbytes
            elif kind == 3:  # a view (an address remap)
                _, src, dst, index, shape = step
                arr = vals[src]
                vals[dst] = (arr[index] if index is not None else arr).reshape(shape)
            elif kind == 4:  # constants and empty tensors, kept from the first run
                out = step[2]
                value = self._kept.get(out)
                if value is None:
                    self._run_plain(step[1], env)
                    self._kept[out] = vals[out]
                else:
                    vals[out] = value
            elif kind == 6:  # a concat; its loaded parts are read once into its buffer
                _, srcs, dst, axis, reads = step
                for is_ddr, v in reads:
                    if is_ddr:
                        ddr += vals[v].nbytes
                    else:
                        hbm += vals[v].nbytes
                vals[dst] = np.concatenate([vals[v] for v in srcs], axis=axis)
            else:  # other layout ops (reading off chip: `follow_tiers` counts a concat's reads only)
                for is_ddr, v in step[2]:
                    if is_ddr:
                        ddr += vals[v].nbytes
                    else:
                        hbm += vals[v].nbytes
                self._run_plain(step[1], env)
        st.hbm_bytes += hbm
        st.ddr_bytes += ddr
        st.wall_s = time.perf_counter() - t0
        return st

    def _prepare_section(self, section: rdu.SectionOp) -> list[tuple[Any, ...]]:
        """The section's ops as steps over value numbers (`self.slot`), kind first, with the
        memory tier each value is read from worked out once (`follow_tiers`, in op order):
        (0, executor, operands, n_in, n_in + n_init, results, counted (operand, is ddr),
        gathers to ddr, label); (1, sources, results) for loads and the yield; (2, source,
        result, is ddr) for a store; (3, source, result, index, shape) for a view; (4, op,
        result) for a constant or empty tensor; (6, sources, result, axis, off-chip reads
        (is ddr, value)) for a concat; (5, op, off-chip reads) for the other layout ops."""
        tier_of: dict[SSAValue, str] = {}
        steps: list[tuple[Any, ...]] = []
        slot = self.slot
        for op in section.body.block.ops:
            reads = [(tier == "ddr", slot[v]) for tier, v in follow_tiers(op, tier_of)]
            if isinstance(op, rdu.KernelOp):
                operands = [*op.inputs, *op.inits]
                hbm_read = tuple(i for i, v in enumerate(operands) if v in tier_of and tier_of[v] != "ddr")
                ddr_read = tuple(i for i, v in enumerate(operands) if v in tier_of and tier_of[v] == "ddr")
                steps.append((0, self.executors[op], tuple(slot[v] for v in op.inputs), tuple(slot[v] for v in op.inits),
                              tuple(slot[v] for v in op.captures), tuple(slot[r] for r in op.results),
                              hbm_read, ddr_read, gather_tier(op) == "ddr", op.label))
            elif isinstance(op, rdu.LoadOp):
                steps.append((1, (slot[op.source],), (slot[op.result],)))
            elif isinstance(op, rdu.YieldOp):
                steps.append((1, tuple(slot[v] for v in op.operands), tuple(slot[r] for r in section.results)))
            elif isinstance(op, rdu.StoreOp):
                steps.append((2, slot[op.source], slot[op.result], str(op.tier.data.value) == "ddr"))
            elif isinstance(op, rdu.ViewOp) and not reads:
                index, shape = _view_index(op)
                steps.append((3, slot[op.source], slot[op.result], index, shape))
            elif isinstance(op, arith.ConstantOp | tensor.EmptyOp):
                steps.append((4, op, slot[op.results[0]]))
            elif isinstance(op, rdu.ConcatOp):
                steps.append((6, tuple(slot[v] for v in op.sources), slot[op.result], op.dim.value.data, reads))
            else:
                steps.append((5, op, reads))
        return steps

    def _run_plain(self, op: Operation, env: Env) -> None:
        """Constants, empty tensors and layout ops (address remaps, no units)."""
        if isinstance(op, arith.ConstantOp):
            value = _constant_value(op)
            if isinstance(value, np.ndarray):
                value.flags.writeable = False  # kept for the next run: read-only (outputs are copied)
            self._constants[op] = env[op.result] = value
        elif isinstance(op, tensor.EmptyOp):
            t = op.results[0].type
            self._constants[op] = env[op.results[0]] = Empty(rdu.shape_of(t), numpy_dtype(rdu.element_type_of(t)))
        elif isinstance(op, rdu.ViewOp):
            how = self._views.get(op)
            if how is None:
                how = self._views[op] = _view_index(op)
            index, shape = how
            arr = env[op.source]
            env[op.result] = (arr[index] if index is not None else arr).reshape(shape)
        elif isinstance(op, rdu.ConcatOp):
            env[op.result] = np.concatenate([env[v] for v in op.sources], axis=op.dim.value.data)
        elif isinstance(op, rdu.PadOp):
            low, high = int_values(op.low), int_values(op.high)
            env[op.result] = np.pad(env[op.source], list(zip(low, high, strict=True)), constant_values=env[op.value])
        elif isinstance(op, rdu.SendOp):
            self.channels[op.channel.value.data] = np.asarray(env[op.value])
        elif isinstance(op, rdu.RecvOp):
            if op.channel.value.data not in self.channels:
                raise EmulatorError(f"rdu.recv of channel {op.channel.value.data}: nothing was sent on it; run the "
                                    "stage programs in stage order (runtime.stages.StagedEmulator)")
            env[op.result] = self.channels.pop(op.channel.value.data)
        else:
            raise EmulatorError(f"op '{op.name}' cannot run on the emulator")


def _comparable(fabric: Fabric) -> Fabric:
    """The fabric without where it was loaded from (a preset and its .toml copy are equal)."""
    return replace(fabric, source="")


def _argument(index: int, v: Any, dtype: np.dtype[Any]) -> np.ndarray:
    """Argument `index` as `dtype`; refuses a conversion to an integer type that changes values
    (floats truncated, integers out of range wrapped). Same-width integers keep their bits."""
    arr = np.asarray(v)
    if arr.dtype == dtype or dtype.kind not in "iub":
        return arr.astype(dtype, copy=False)
    if arr.dtype.kind in "iu" and dtype.kind in "iu" and arr.dtype.itemsize == dtype.itemsize:
        from rdu_compiler.runtime.boundary import same_bits  # (boundary imports torch: only here)

        return same_bits(arr, dtype)  # signless integers: a uint8 is the program's i8, same bits
    if arr.dtype.kind in "iub":
        out = arr.astype(dtype)
        if np.array_equal(out.astype(arr.dtype), arr):
            return out
    raise EmulatorError(
        f"argument {index}: {arr.dtype.name} values do not convert exactly to the program's {dtype.name} "
        "(a float would be truncated or an integer out of range would wrap); the emulator refuses the run. "
        f"Pass {dtype.name} values."
    )


def _view_index(op: rdu.ViewOp) -> tuple[tuple[slice, ...] | None, tuple[int, ...]]:
    """A view as (the basic index it takes, None for a reshape; the result shape)."""
    shape = rdu.shape_of(op.result.type)
    if op.mode.data == "reshape":
        return None, shape
    offsets = op.offsets.get_values()  # type: ignore[union-attr]
    sizes = op.sizes.get_values()  # type: ignore[union-attr]
    strides = op.strides.get_values()  # type: ignore[union-attr]
    return tuple(slice(o, o + (n - 1) * s + 1, s) for o, n, s in zip(offsets, sizes, strides, strict=True)), shape


def _constant_value(op: arith.ConstantOp) -> Any:
    t = op.result.type
    value = op.value
    dtype = numpy_dtype(rdu.element_type_of(t))
    if isinstance(value, DenseIntOrFPElementsAttr):
        shape = rdu.shape_of(t)
        data = np.asarray(value.get_values(), dtype=dtype).reshape(-1)
        if data.size == 1:  # a splat: one element, broadcast read-only, never materialised
            return np.broadcast_to(data[0], shape) if shape else data[0]
        return data.reshape(shape)
    data = getattr(value, "value", None)
    if data is None:
        raise EmulatorError(f"constant {value} is not supported by the emulator")
    return np.asarray(data.data, dtype=dtype)[()]



