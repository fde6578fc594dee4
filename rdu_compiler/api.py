"""The Python API: `compile(module, example_inputs)` -> `CompiledProgram`."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils import _pytree as pytree
from xdsl.dialects.builtin import ModuleOp

from rdu_compiler.cost.analysis import build_report
from rdu_compiler.cost.node import check_sockets, node_report
from rdu_compiler.cost.pipeline import check_pp
from rdu_compiler.dtypes import numpy_dtype, numpy_of_torch, to_numpy, to_torch
from rdu_compiler.errors import CompileError, RduError
from rdu_compiler.fabric import Fabric, load_fabric, node_fabric
from rdu_compiler.ir import parse_module
from rdu_compiler.pipeline import COST, IMPORT, PARSE, _quote, pipeline, run_pipeline, set_fabric

Stage = Callable[[str], None]


@dataclass
class CompiledProgram:
    """A model compiled for one fabric.

    Attributes:
        ir: the placed rdu program (MLIR text).
        report: the compile report (dict; see `cost.analysis.build_report`), plus
            `emulator` after a run.
        linalg: torch-mlir's linalg-on-tensors text the compiler started from.
    """

    module: ModuleOp
    fabric: Fabric
    opt_level: int
    imported: Any
    linalg: str
    report: dict[str, Any]
    snapshots: dict[str, str] = field(default_factory=dict)
    last_stats: Any = None
    _emulator: Any = field(default=None, repr=False)
    _triton: Any = field(default=None, repr=False)  # runtime.triton: (source, runner)
    _memo: Any = field(default=None, repr=False)  # (module, imported, dtypes, weight views): `_arguments`' per-program lookups

    @property
    def ir(self) -> str:
        """The placed rdu program as MLIR text, headed by `// kernel: model line` comments."""
        return kernel_source_comments(self.report) + str(self.module)

    def run(self, *inputs: Any, target: str = "emulator") -> Any:
        """Run on `inputs` (tensors shaped like the example inputs); returns torch tensors
        in the model's output structure.

        Raises:
            RduError: an unknown target, wrong inputs, or the emulator refused the program.
        """
        if target == "triton":
            return self._run_triton(inputs)
        if target != "emulator":
            raise RduError(f"target '{target}' is not available; the targets are 'emulator' and 'triton'")
        from rdu_compiler.runtime.stages import make_emulator

        if self._emulator is None:
            self._emulator = make_emulator(self.module, self.fabric)  # a pipelined program: its stages
        args = self._arguments(inputs)
        try:
            outputs, stats = self._emulator.run(args)
        except RduError as e:
            raise self._locate(e) from None
        self.last_stats = stats
        self.report["emulator"] = stats.to_dict()
        from rdu_compiler.runtime.boundary import eager_output_dtypes, same_bits

        eager = eager_output_dtypes(self.imported)
        tensors = [to_torch(same_bits(np.asarray(o), eager[i] if i < len(eager) else None)) for i, o in enumerate(outputs)]
        return pytree.tree_unflatten(tensors, self.imported.out_spec)

    def triton_source(self) -> Any:
        """The GPU fallback: kernels.py for this program (`runtime.triton.TritonSource`).

        Raises:
            CompileError: a kernel or op the Triton generator cannot express (named).
        """
        from rdu_compiler.passes.shard_layout import module_tp
        from rdu_compiler.runtime.triton import generate

        if module_tp(self.module) > 1:
            raise RduError(f"the program is split over tp = {module_tp(self.module)} sockets; the Triton fallback "
                           "runs one-socket programs only: compile with tp=1 for target='triton'")
        if self._triton is None:
            imp = self.imported
            self._triton = (generate(self.module, imp.arg_names, imp.input_names, title=type(self).__name__), None)
        return self._triton[0]

    def _run_triton(self, inputs: tuple[Any, ...]) -> Any:
        """target="triton": the generated Triton kernels on CUDA (the interpreter without a GPU)."""
        from rdu_compiler.runtime.triton.runner import TritonRunner

        source = self.triton_source()
        runner = self._triton[1]
        if runner is None:
            runner = TritonRunner(source, self.imported.weights)
            self._triton = (source, runner)
        flat, _ = pytree.tree_flatten(inputs)
        if len(flat) != len(self.imported.input_names):
            raise RduError(f"the model takes {len(self.imported.input_names)} input tensor(s), got {len(flat)}")
        expected = self._input_dtypes()
        from rdu_compiler.runtime.boundary import eager_output_dtypes, same_bits

        program = self._program_dtypes()
        for i, (name, value) in enumerate(zip(self.imported.input_names, flat, strict=True)):
            arr = to_numpy(value) if isinstance(value, torch.Tensor) else np.asarray(value)
            self._check_dtype(name, value, arr, expected)
            if isinstance(value, torch.Tensor) and program.get(name) is not None and arr.dtype != program[name]:
                flat[i] = to_torch(same_bits(arr, program[name])).to(value.device)
        eager = eager_output_dtypes(self.imported)
        try:
            outputs = list(runner.run(*flat))
        except RduError as e:
            raise self._locate(e) from None
        for i, o in enumerate(outputs):
            want = eager[i] if i < len(eager) else None
            if want is not None and numpy_of_torch(o.dtype) != want:  # uint8 results computed as i8
                outputs[i] = to_torch(same_bits(to_numpy(o), want)).to(o.device)
        return pytree.tree_unflatten(list(outputs), self.imported.out_spec)

    def save_triton(self, directory: str) -> None:
        """Write kernels.py (the Triton program) and weights.safetensors (weights and the
        program's dense constants) into `directory`; they need only torch and triton."""
        import dataclasses

        from rdu_compiler.frontend.weights import save_weights

        source = self.triton_source()
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "kernels.py"), "w") as f:
            f.write(source.text)
        imp = self.imported
        consts = {k: torch.from_numpy(np.require(v, requirements="C")) for k, v in source.constants.items()}
        if consts:
            imp = dataclasses.replace(
                imp,
                weights={**imp.weights, **consts},
                arg_names=[*imp.arg_names, *consts],
                arg_kinds=[*imp.arg_kinds, *(["constant"] * len(consts))],
            )
        save_weights(os.path.join(directory, "weights.safetensors"), imp)

    def _arguments(self, inputs: tuple[Any, ...]) -> list[np.ndarray]:
        """The program's arguments (user inputs then weights, in `arg_names` order) as numpy.

        Raises:
            RduError: a wrong number of inputs, or an input whose dtype is not the one the
                model was compiled for (never converted: an int64 id would wrap to int32, a
                float id would be truncated).
        """
        flat, _ = pytree.tree_flatten(inputs)
        if len(flat) != len(self.imported.input_names):
            raise RduError(f"the model takes {len(self.imported.input_names)} input tensor(s), got {len(flat)}")
        from rdu_compiler.runtime.boundary import same_bits, weight_view

        by_name = dict(zip(self.imported.input_names, flat, strict=True))
        if self._memo is None or self._memo[0] is not self.module or self._memo[1] is not self.imported:
            self._memo = (self.module, self.imported, self._input_dtypes(), self._program_dtypes(), {})
        (_, _, expected, program, views), args = self._memo, []
        for name in self.imported.arg_names:
            value = by_name[name] if name in by_name else self.imported.weights[name]
            arr = weight_view(views, name, value) if name not in by_name else to_numpy(value) if isinstance(value, torch.Tensor) else np.asarray(value)
            if name in by_name:
                self._check_dtype(name, value, arr, expected)
            args.append(same_bits(arr, program.get(name)))  # uint8 -> the program's signless i8
        return args

    def _check_dtype(self, name: str, value: Any, arr: np.ndarray, expected: dict[str, np.dtype[Any]]) -> None:
        """Refuse user input `name` unless its dtype is the one the program was compiled for."""
        if name in expected and arr.dtype != expected[name]:
            position = self.imported.input_names.index(name)
            raise RduError(
                f"input '{name}' (#{position}) has dtype {_dtype_name(value, arr)} but the model was "
                f"compiled for {expected[name].name}; the runtime does not convert inputs (that "
                f"would wrap or truncate values). Pass a tensor of dtype {expected[name].name}, "
                "or compile with example inputs of the dtype you run with."
            )

    def _locate(self, err: RduError) -> RduError:
        """Append the model line (PyTorch) or ONNX node behind the kernel an emulator error names."""
        import re

        from rdu_compiler.frontend.locations import add_source_location, payload_op_lines

        op = getattr(err, "payload_op", None)
        k = re.search(r"kernel 'k(\d+)_", str(err))
        op_nodes = getattr(self.imported, "op_nodes", None)
        if op and k and op_nodes:
            lines = payload_op_lines(self.linalg, int(k.group(1)), op, op_nodes)
            if lines:
                err.args = (f"{err.args[0]} [from {' or '.join(lines)}]",)
                return err
        return add_source_location(err, self.imported)

    def _input_dtypes(self) -> dict[str, np.dtype[Any]]:
        """input name -> the dtype the model takes: as exported (eager's / the ONNX graph's),
        else the element type of the program's function argument."""
        from rdu_compiler.runtime.boundary import eager_input_dtypes

        eager = eager_input_dtypes(self.imported)
        program = self._program_dtypes()
        return {n: eager.get(n, program[n]) for n in self.imported.input_names if n in eager or n in program}

    def _program_dtypes(self) -> dict[str, np.dtype[Any]]:
        """argument name -> numpy dtype of the program's function argument."""
        from rdu_compiler.dialects import rdu
        from rdu_compiler.runtime.stages import argument_types

        types = argument_types(self.module)  # of the unstaged function (a stage takes some of them)
        return {n: numpy_dtype(rdu.element_type_of(t)) for n, t in zip(self.imported.arg_names, types, strict=False)}

    @property
    def shape_only(self) -> bool:
        """Whether the weights are on the meta device (shapes without data): such a program
        compiles and reports, but has no weights to save or run with."""
        return any(isinstance(w, torch.Tensor) and w.is_meta for w in self.imported.weights.values())

    def save(self, directory: str) -> None:
        """Write model.mlir (placed program), weights.safetensors and report.json; a
        shape-only program (`shape_only`) has no weights.safetensors."""
        from rdu_compiler.frontend.weights import save_weights

        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "model.mlir"), "w") as f:
            f.write(self.ir)
        if not self.shape_only:
            save_weights(os.path.join(directory, "weights.safetensors"), self.imported)
        with open(os.path.join(directory, "report.json"), "w") as f:
            json.dump(self.report, f, indent=2, default=str)


#: numpy (ml_dtypes) names of the narrow ONNX types -> the dtype the program computes them
#: in (`frontend.onnx.narrow`: every value is exact there).
_NARROW_NUMPY = {
    "int4": np.int8, "int2": np.int8, "uint4": np.uint8, "uint2": np.uint8, "float4_e2m1fn": np.float32,
    "float8_e4m3fn": np.float32, "float8_e4m3fnuz": np.float32, "float8_e5m2": np.float32,
    "float8_e5m2fnuz": np.float32,
}


@dataclass
class OnnxProgram(CompiledProgram):
    """An ONNX model compiled for one fabric (`compile_onnx`). The fields of
    `CompiledProgram`; `run` behaves like onnxruntime's `InferenceSession.run`."""

    def run(self, *inputs: Any, target: str = "emulator") -> list[np.ndarray]:  # type: ignore[override]
        """Run on one numpy array per graph input, in order, or on a single dict of them by
        input name (torch tensors are taken too).

        Returns one numpy array per graph output, in the graph's declared dtypes: a uint8
        output comes back as uint8 (the program computes on signless integers, same bits),
        bfloat16 as `ml_dtypes.bfloat16`.

        Raises:
            RduError: an unknown target, missing or extra inputs, an input whose dtype is not
                the graph's (never converted), or the emulator refused the program (the
                message names the ONNX node).
        """
        from rdu_compiler.runtime.boundary import same_bits

        imported = self.imported
        if len(inputs) == 1 and isinstance(inputs[0], Mapping):
            by_name = dict(inputs[0])
            missing = [n for n in imported.input_names if n not in by_name]
            extra = [n for n in by_name if n not in imported.input_names]
            if missing or extra:
                raise RduError(
                    f"the inputs name {sorted(by_name)}, but the model takes {imported.input_names}; "
                    "pass one array per graph input"
                )
            inputs = tuple(by_name[n] for n in imported.input_names)
        if len(inputs) != len(imported.input_names):
            raise RduError(f"the model takes {len(imported.input_names)} input(s) {imported.input_names}, got {len(inputs)}")
        if target == "triton":
            expected = self._input_dtypes()
            tensors = [to_torch(self._input_array(n, v, expected)) for n, v in zip(imported.input_names, inputs, strict=True)]
            outputs = super().run(*tensors, target="triton")
            arrays = [to_numpy(o) for o in pytree.tree_leaves(outputs)]
        elif target == "emulator":
            arrays = self._emulate(dict(zip(imported.input_names, inputs, strict=True)))
        else:
            raise RduError(f"target '{target}' is not available; the targets are 'emulator' and 'triton'")
        declared = imported.output_dtypes
        result = []
        for i, arr in enumerate(arrays):
            want = declared[i] if i < len(declared) and declared[i].kind != "O" else None
            arr = same_bits(np.asarray(arr), want)  # i8 -> uint8: the same bits
            result.append(arr.astype(want) if want is not None and arr.dtype != want else arr)
        return result

    def _input_array(self, name: str, value: Any, expected: dict[str, np.dtype[Any]]) -> np.ndarray:
        """User input `name` as numpy, refused unless of its `expected` (declared) dtype."""
        arr = to_numpy(value) if isinstance(value, torch.Tensor) else np.asarray(value)
        self._check_dtype(name, value, arr, expected)
        return arr

    def _emulate(self, values: dict[str, Any]) -> list[np.ndarray]:
        """The emulator's outputs for user inputs `values` (by name); weights from the program."""
        from rdu_compiler.runtime.boundary import same_bits
        from rdu_compiler.runtime.stages import make_emulator

        program = self._program_dtypes()
        expected = self._input_dtypes()
        args = []
        for name in self.imported.arg_names:
            if name in values:
                arr = self._input_array(name, values[name], expected)
            else:
                w = self.imported.weights[name]
                arr = to_numpy(w) if isinstance(w, torch.Tensor) else np.asarray(w)
            if arr.dtype.name in _NARROW_NUMPY:  # computed in a wider type (frontend.onnx.narrow): exact
                arr = arr.astype(_NARROW_NUMPY[arr.dtype.name])
            args.append(same_bits(arr, program.get(name)))
        if self._emulator is None:
            self._emulator = make_emulator(self.module, self.fabric)
        try:
            outputs, stats = self._emulator.run(args)
        except RduError as e:
            raise self._locate(e) from None
        self.last_stats = stats
        self.report["emulator"] = stats.to_dict()
        return [np.asarray(o) for o in outputs]


def _dtype_name(value: Any, arr: np.ndarray) -> str:
    return str(value.dtype).removeprefix("torch.") if isinstance(value, torch.Tensor) else arr.dtype.name


def compile(  # noqa: A001 - the documented name of the API
    module: torch.nn.Module,
    example_inputs: tuple[Any, ...],
    fabric: str = "sn40l",
    opt_level: int = 1,
    *,
    fold_constants: bool = False,
    on_stage: Stage | None = None,
    repro_dir: str | None = None,
    keep_ir: bool = False,
    tp: int = 1,
    sockets: int | None = None,
    pp: int = 1,
    microbatches: int = 1, kernel_looping: bool = False,
    tier_rows: dict[str, Any] | None = None,
    resident_index: bool = False,
) -> CompiledProgram:
    """Compile a PyTorch module for the RDU.

    Args:
        module: the model; exported with `torch.export` on `example_inputs`.
        example_inputs: a tuple of tensors (static shapes).
        fabric: a preset name (`sn40l`, `tiny`) or a path to a fabric `.toml`.
        opt_level: 0 = unfused baseline (one kernel per section), 1 = fused.
        fold_constants: evaluate input-independent subgraphs (masks, RoPE tables) at
            import time with PyTorch instead of compiling them.
        on_stage: called with each stage's name (progress display).
        keep_ir: keep the IR text after every pass in `.snapshots` (pass name -> text).
        tp: tensor-parallel degree: `rdu-shard{tp=N}` splits the program over `tp`
            sockets of the fabric's node (docs/design.md "Tensor parallelism"); `.run`
            then runs every socket's program on the node emulator.
        sockets: sockets the program may use (default: tp x pp); at most the node's, and tp
            divides it. A shipped preset with fewer sockets stands for its node: "sn40l"
            with 16 sockets compiles for "sn40l-rack16" (`node_fabric`).
        pp: pipeline-parallel stages, one per socket, or per tp sockets (`rdu-pipeline`; needs
            >= tp x pp sockets, e.g. "sn40l-node8"); `example_inputs` are then one micro-batch.
        microbatches: micro-batches per call; `report["totals"]["estimated_s"]` is the
            node's time for all of them, with the bubble (`cost.pipeline`).
        kernel_looping: loop repeated layers (`rdu-kernel-loop`, `cost.kloop`); refused with pp > 1.
        tier_rows: split embedding tables' rows between HBM and DDR (`rdu-tier-rows`):
            {"hbm_bytes": int (HBM budget for the tables' rows), "zipf": s (a stated Zipf
            assumption) and/or "profile": {parameter or buffer name ("tables.3.weight") or
            FX argument name: per-row access counts}}; one socket only (tp = pp = 1).
        resident_index: state that every collisionless lookup's cuckoo index stays in its
            probe's PMUs across calls (`rdu-tile{resident_index=true}`, `cost.residency`):
            per-call bytes and time exclude the index, `report["resident_index"]` gives the
            first call's load; an index that does not fit one buffer is refused; one socket only.

    Raises:
        RduError: the frontend, a pass or the fabric refused the model (message says
            what, where and what to do).
    """
    if opt_level not in (0, 1):
        raise RduError(f"opt_level must be 0 or 1, got {opt_level}")
    stage = on_stage or (lambda _: None)
    fabric = node_fabric(fabric, tp * pp, sockets)
    fab = _fabric(fabric)
    check_pp(fab, pp, microbatches, tp, sockets)  # tp x pp sockets first: the clearer message
    check_sockets(fab, tp, sockets if pp == 1 else None)  # before the import; with pp check_pp checked sockets
    stage(IMPORT)
    imported = import_model(module, example_inputs, fold_constants=fold_constants)
    return _compile_imported(imported, fab, fabric, opt_level, stage, repro_dir, keep_ir, tp=tp, pp=(pp, microbatches),
                             kernel_looping=kernel_looping, tier_rows=tier_rows, resident_index=resident_index)


def import_model(module: torch.nn.Module, example_inputs: tuple[Any, ...], *, fold_constants: bool = False) -> Any:
    """Export `module` on `example_inputs` and lower it to linalg once (the frontend half of
    `compile`): the result compiles for any fabric and opt level with `compile_imported`,
    so a sweep over fabrics pays torch.export and torch-mlir once.

    Returns:
        the frontend's `ImportedProgram` (linalg MLIR text, weights, source locations).

    Raises:
        RduError: the frontend refused the model.
    """
    from rdu_compiler.frontend.torch.export import import_torch

    return import_torch(module, tuple(example_inputs), fold_constants=fold_constants)


def compile_imported(
    imported: Any,
    fabric: str = "sn40l",
    opt_level: int = 1,
    *,
    on_stage: Stage | None = None,
    repro_dir: str | None = None,
    keep_ir: bool = False,
    tp: int = 1,
    sockets: int | None = None,
    pp: int = 1,
    microbatches: int = 1, kernel_looping: bool = False, tier_rows: dict[str, Any] | None = None, resident_index: bool = False,
) -> CompiledProgram:
    """Compile a program from `import_model` for one fabric and opt level (arguments as
    `compile`). The imported program is only read, so one import serves many calls.

    Raises:
        RduError: a pass or the fabric refused the program.
    """
    if opt_level not in (0, 1):
        raise RduError(f"opt_level must be 0 or 1, got {opt_level}")
    stage = on_stage or (lambda _: None)
    fabric = node_fabric(fabric, tp * pp, sockets)
    fab = _fabric(fabric)
    check_pp(fab, pp, microbatches, tp, sockets)  # tp x pp sockets first: the clearer message
    check_sockets(fab, tp, sockets if pp == 1 else None)
    return _compile_imported(imported, fab, fabric, opt_level, stage, repro_dir, keep_ir, tp=tp, pp=(pp, microbatches),
                             kernel_looping=kernel_looping, tier_rows=tier_rows, resident_index=resident_index)


@contextlib.contextmanager
def _long_lived_heap() -> Iterator[Callable[[], None]]:
    """Collect garbage as a compiler's heap wants: the model and the IR live for the whole
    compile, so `gc.freeze()` them (the collector stops re-scanning them; new garbage is still
    collected) and unfreeze at the end. Yields `refreeze`, to call once more objects of that
    kind exist (after parsing). Does nothing when the process already froze objects itself."""
    if gc.get_freeze_count():
        yield lambda: None
        return
    gc.freeze()
    try:
        yield gc.freeze
    finally:
        gc.unfreeze()


def _compile_imported(
    imported: Any, fab: Fabric, fabric: str, opt_level: int, stage: Stage, repro_dir: str | None, keep_ir: bool,
    cls: type[CompiledProgram] = CompiledProgram, tp: int = 1, pp: tuple[int, int] = (1, 1), kernel_looping: bool = False,
    tier_rows: dict[str, Any] | None = None, resident_index: bool = False,
) -> Any:
    """Parse the imported linalg text, run the pass pipeline, build the report."""
    with _long_lived_heap() as refreeze:
        stage(PARSE)
        def parsed() -> ModuleOp:
            m = parse_module(imported.mlir_text, "linalg")
            set_fabric(m, fabric)
            if tp > 1:
                from rdu_compiler.passes.shard_layout import mark_inputs

                mark_inputs(m, list(imported.arg_kinds))
            return m

        mod = parsed()
        refreeze()
        snapshots: dict[str, str] | None = {} if keep_ir else None
        try:
            with tempfile.TemporaryDirectory() as tmp:
                tiers = tier_rows_options(tier_rows, imported.arg_names, tmp) if tier_rows is not None else ""
                passes = pipeline(fabric, opt_level, tp=tp, pp=pp[0], microbatches=pp[1], kernel_looping=kernel_looping,
                                  tier_rows=tiers, resident_index=resident_index)
                run_pipeline(mod, passes, on_pass=stage, repro_dir=repro_dir, snapshots=snapshots,
                             source=parsed)  # re-parsed only if a pass fails
        except CompileError as e:
            _locate(e, imported)  # the model line / ONNX node of the refused op
            raise
        stage(COST)
        if pp[0] > 1:
            from rdu_compiler.cost.pipeline import node_report as pipeline_node_report
            from rdu_compiler.cost.pipeline import pipeline_report

            report = pipeline_report(mod, fab, opt_level)
            report["node"] = pipeline_node_report(report, fab)
        else:
            report = build_report(mod, fab, opt_level)
            report["node"] = node_report(fab, tp)
        if tp > 1 and pp[0] == 1:  # tp x pp: pipeline_report costs each stage's collectives
            from rdu_compiler.cost.node import add_node_report

            add_node_report(report, mod, fab)
        report["constants"] = _constants_report(imported, mod)
        _add_kernel_sources(report, imported)
    return cls(mod, fab, opt_level, imported, imported.mlir_text, report, snapshots or {})


def tier_rows_options(tier_rows: dict[str, Any], arg_names: list[str], tmp: str) -> str:
    """`compile(tier_rows=...)` as `rdu-tier-rows` options; a profile keyed by parameter
    name is written to `tmp`/profile.json keyed by argument position.

    Raises:
        RduError: an unknown key, or a profile entry naming no argument.
    """
    zipf, unknown = tier_rows.get("zipf"), set(tier_rows) - {"hbm_bytes", "zipf", "profile"}
    if unknown or "hbm_bytes" not in tier_rows or (zipf is not None and not np.isfinite(float(zipf))):
        raise RduError(f"tier_rows takes hbm_bytes (required), zipf (a finite exponent > 0) and profile; got {tier_rows}")
    opts = [f"hbm_bytes={int(tier_rows['hbm_bytes'])}"] + ([f"zipf={float(zipf)!r}"] if zipf is not None else [])
    if tier_rows.get("profile"):
        counts = {}
        for name, c in tier_rows["profile"].items():
            fx = next((n for n in (name, "p_" + name.replace(".", "_"), "b_" + name.replace(".", "_")) if n in arg_names), "")
            if not fx:
                raise RduError(f"tier_rows profile: '{name}' is not a parameter of the model "
                               f"(parameters and buffers: {[a for a in arg_names if a[:2] in ('p_', 'b_')][:8]} ...)")
            counts[str(arg_names.index(fx))] = np.asarray(c, dtype=np.float64).tolist()
        path = os.path.join(tmp, "profile.json")
        with open(path, "w") as f:
            json.dump(counts, f)
        opts.append(f"profile={_quote(path)}")
    return " ".join(opts)


_KERNEL_NUMBER = re.compile(r"k(\d+)_")


def _add_kernel_sources(report: dict[str, Any], imported: Any) -> None:
    """Give each kernel of `report["sections"]` its model line as `source`: kernel 'k7_...'
    comes from op #7 of the imported `@main` (`ImportedProgram.op_nodes`; the number is kept
    through every pass, and fusion keeps the consumer's), e.g. 'model.py:12 `y = x @ w`' or
    "ONNX node 'mm' (MatMul)". Kernels whose op has no known line get none."""
    op_nodes = getattr(imported, "op_nodes", None) or []
    for section in report.get("sections", []):
        for k in section.get("kernels", []):
            m = _KERNEL_NUMBER.match(k.get("name", ""))
            if m and int(m.group(1)) < len(op_nodes) and op_nodes[int(m.group(1))]:
                k["source"] = op_nodes[int(m.group(1))]


def kernel_source_comments(report: dict[str, Any]) -> str:
    """`// k7_map: model.py:12 ...` lines, one per kernel with a model line: the header
    `save` puts above model.mlir (MLIR comments: rdu-opt reads the file unchanged)."""
    lines = [f"// {k['name']}: {k['source']}" for s in report.get("sections", []) for k in s.get("kernels", [])
             if k.get("source")]
    if not lines:
        return ""
    head = "// model lines of the kernels (the op each kernel comes from; producers fused into it are not listed)"
    return "\n".join([head, *lines]) + "\n"


def _constants_report(imported: Any, module: Any) -> dict[str, Any]:
    """Where the program's constant data lives: bytes of weights by kind (parameter, buffer,
    constant: tensors the model computes with but does not train, lifted by torch.export or
    folded at import; tied tensors counted once), and bytes of dense literals left in the IR
    (``arith.constant`` values as stored; a large splat is one element)."""
    from xdsl.dialects import arith
    from xdsl.dialects.builtin import DenseIntOrFPElementsAttr

    by_kind: dict[str, int] = {}
    seen: set[int] = set()
    for name, kind in zip(imported.arg_names, imported.arg_kinds, strict=True):
        w = imported.weights.get(name) if kind != "input" else None
        if w is None or id(w) in seen:
            continue
        seen.add(id(w))
        nbytes = w.numel() * w.element_size() if isinstance(w, torch.Tensor) else int(np.asarray(w).nbytes)
        by_kind[kind] = by_kind.get(kind, 0) + nbytes
    literals = [len(op.value.data.data) for op in module.walk()
                if isinstance(op, arith.ConstantOp) and isinstance(op.value, DenseIntOrFPElementsAttr)]
    return {"weight_bytes": dict(sorted(by_kind.items())), "constants_as_weights_bytes": by_kind.get("constant", 0),
            "ir_literal_bytes": sum(literals), "largest_ir_literal_bytes": max(literals, default=0)}


def _fabric(name: str) -> Fabric:
    from rdu_compiler.fabric import FabricError

    try:
        return load_fabric(name)
    except FabricError as e:
        raise RduError(str(e)) from e


def compile_onnx(
    model: Any,
    fabric: str = "sn40l",
    opt_level: int = 1,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    *,
    constant_inputs: dict[str, Any] | None = None,
    on_stage: Stage | None = None,
    repro_dir: str | None = None,
    keep_ir: bool = False,
    tp: int = 1,
    sockets: int | None = None, kernel_looping: bool = False,
) -> OnnxProgram:
    """Compile an ONNX model (a path or an `onnx.ModelProto`) for the RDU.

    Inputs take their declared static shapes; `input_shapes` ({name: shape}) gives those
    with dynamic dims; `constant_inputs` ({name: array}) binds inputs to fixed values (for
    inputs an op needs at compile time, such as a Reshape's shape). Initializers become
    weight arguments. The result's `.run` is onnxruntime's: numpy arrays in, a list of numpy
    arrays out in the graph's declared dtypes (`OnnxProgram.run`). Other arguments (`tp`,
    `sockets` included) as `compile`.

    Raises:
        RduError: the file, the ONNX importer, a pass or the fabric refused the model.
    """
    from rdu_compiler.frontend.onnx.importer import import_onnx

    if opt_level not in (0, 1):
        raise RduError(f"opt_level must be 0 or 1, got {opt_level}")
    stage = on_stage or (lambda _: None)
    fabric = node_fabric(fabric, tp, sockets)
    fab = _fabric(fabric)
    check_sockets(fab, tp, sockets)
    stage(IMPORT)
    imported = import_onnx(model, input_shapes, constant_inputs)
    return _compile_imported(imported, fab, fabric, opt_level, stage, repro_dir, keep_ir, OnnxProgram, tp=tp, kernel_looping=kernel_looping)


def _locate(err: CompileError, imported: Any) -> None:
    """Add where the op a pass refused comes from (model line or ONNX node) to `err`."""
    from rdu_compiler.frontend.locations import add_source_location

    add_source_location(err, imported)
