"""The compiler as one list of named stages: model to result.

`stages` is every stage a compile goes through, in order, as the progress display and
`report["compile_stages_s"]` name them: loading the model file, the frontend (export and
torch-mlir, or the ONNX importer), parsing into xDSL, each pass of `pipeline` (each runs
alone under `rdu-opt`), the cost model, and, when asked, the emulator run and the check
against the reference.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import DiagnosticException, VerifyException

from rdu_compiler.errors import CompileError
from rdu_compiler.ir import make_context
from rdu_compiler.passes.common import FABRIC_ATTR

LOAD = "load model"
IMPORT = "export + torch-mlir"
PARSE = "parse (xDSL)"
COST = "cost model"
RUN = "emulate"
CHECK = "check"


def stages(fabric: str, opt_level: int, *, run: bool = False, check: bool = False, tp: int = 1, pp: int = 1,
           kernel_looping: bool = False, tier_rows: str = "", resident_index: bool = False) -> list[str]:
    """Every stage from model file to result, in order (`api.compile` reports the ones from
    IMPORT to COST through `on_stage`; the CLI adds LOAD, RUN and CHECK)."""
    passes = [spec.split("{", 1)[0] for spec in pipeline(fabric, opt_level, tp=tp, pp=pp, kernel_looping=kernel_looping,
                                                                 tier_rows=tier_rows, resident_index=resident_index)]
    return [LOAD, IMPORT, PARSE, *passes, COST, *([RUN] if run else []), *([CHECK] if check else [])]


def pipeline(fabric: str, opt_level: int, *, tp: int = 1, pp: int = 1, microbatches: int = 1,
             kernel_looping: bool = False, tier_rows: str = "", resident_index: bool = False) -> list[str]:
    """The pass pipeline, as `rdu-opt -p` would spell each pass.

    `rdu-fold-constants` evaluates the shape checks and scalar code on constants that
    torch-mlir emits, before `rdu-convert-linalg` lowers the rest. -O0 is SambaFlow's
    unfused baseline (every kernel its own section); -O1 folds views into access
    patterns, fuses elementwise chains into their consumers and packs kernels into
    sections. With `tp` > 1, `rdu-shard{tp=N}` splits the program over N sockets after
    the views are folded (the head loops are then visible in the maps) and before fusion.
    With `pp` > 1, `rdu-pipeline` cuts the fused kernel graph into pp stage
    programs first, so each is tiled, sectioned and placed on its own socket. With
    `kernel_looping`, `rdu-kernel-loop` records the repeated layers of the placed program
    as kernel loops (one looped call, `cost.kloop`). With `tier_rows` (the options of
    `rdu-tier-rows`, e.g. "hbm_bytes=268435456 zipf=1.05"), that pass splits each embedding
    table's rows between HBM and DDR before rdu-allocate. With `resident_index`,
    `rdu-tile{resident_index=true}` keeps every hash probe's index in its PMUs across calls
    (`cost.residency`).

    Raises:
        CompileError: kernel_looping with pp > 1; tier_rows or resident_index with tp or pp > 1.
    """
    if kernel_looping and pp > 1:  # refused before anything runs (the CLI lists the stages first)
        raise CompileError("rdu-kernel-loop", f"kernel looping with pp = {pp}: the pipeline stages are separate "
                           "programs whose cost (cost.pipeline) does not charge looped calls yet, so the loop would "
                           "change nothing the report shows; compile with kernel looping and tp (or one socket), or "
                           "with pp alone")
    if tier_rows and (tp > 1 or pp > 1):
        raise CompileError("rdu-tier-rows", f"row tiering with tp = {tp}, pp = {pp}: not tried on sharded or "
                           "pipelined programs yet; compile on one socket (tp = pp = 1)")
    if resident_index and (tp > 1 or pp > 1):
        raise CompileError("rdu-tile", f"resident_index with tp = {tp}, pp = {pp}: not tried on sharded or "
                           "pipelined programs yet; compile on one socket (tp = pp = 1)")
    per_op = "true" if opt_level == 0 else "false"
    fabric = fabric if fabric.isidentifier() else _quote(fabric)  # a spec path
    resident = " resident_index=true" if resident_index else ""
    passes = ["rdu-fold-constants", "rdu-convert-linalg", "rdu-hash-lookup", "rdu-inline-splats"]
    if opt_level >= 1:
        passes += ["rdu-fold-views"]
    if tp != 1:
        passes += [f"rdu-shard{{tp={tp} fabric={fabric}}}"]
    if opt_level >= 1:
        passes += ["rdu-fuse"]
    if pp > 1:
        passes.append(f"rdu-pipeline{{pp={pp} microbatches={microbatches} fabric={fabric}}}")
    passes += [
        f"rdu-tile{{fabric={fabric}{resident}}}" if opt_level >= 1 else f"rdu-tile{{fabric={fabric} max_buffer_pmus=0{resident}}}",
        f"rdu-section{{fabric={fabric} per_op={per_op}}}",
        *([f"rdu-tier-rows{{{tier_rows} fabric={fabric}}}"] if tier_rows else []),
        f"rdu-allocate{{fabric={fabric}}}",
        f"rdu-place{{fabric={fabric}}}",
    ]
    if kernel_looping:
        passes.append("rdu-kernel-loop")
    return passes


def _quote(text: str) -> str:
    """`text` as a quoted pass-option string: backslash, quote and control characters
    escaped as xDSL's pass-spec lexer unescapes them (a Windows-style spec path keeps its
    backslashes)."""
    escapes = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\f": "\\f", "\v": "\\v"}
    return '"' + "".join(escapes.get(c, c) for c in text) + '"'


def run_pipeline(
    module: ModuleOp,
    passes: list[str],
    on_pass: Callable[[str], None] | None = None,
    repro_dir: str | None = None,
    snapshots: dict[str, str] | None = None,
    verify_each: bool | None = None,
    source: Callable[[], ModuleOp] | None = None,
) -> ModuleOp:
    """Apply `passes` in order and verify the result.

    Verification: with `verify_each` (default: $RDU_VERIFY_EACH_PASS = "1") the module is
    verified after every pass from rdu-convert-linalg on; otherwise only after the last
    one (xDSL's verifier costs ~0.4 s per pass on GPT-2 small). When that final check
    fails, or a pass refuses its input, the passes run again from the pipeline's input with
    `verify_each`, so the error still names the first pass that left the module invalid
    (with its input as reproducer); a refusal of valid input is reported as it was.

    Raises:
        CompileError: a pass refused the module or left it invalid.
            The module as it was before that pass is written to a file, and the error
            names it with the `rdu-opt` command that reproduces the failure.

    `snapshots`, if given, receives the module text after each pass, by pass name. The
    module is printed only then, or when a pass fails.

    `source`, if given, rebuilds the pipeline's input (the caller re-parses the text it
    parsed `module` from); it is called only when a pass fails. Without it the input is
    cloned once. Either way no pass's input is kept: on a failure of pass i, passes 0..i-1
    run again on a fresh input (they are deterministic) and that module, printed, is the
    reproducer. Cloning before every pass cost ~0.4 s per pass on the 32-layer HF
    Llama-3.1-8B.
    """
    from xdsl.passes import PassPipeline

    from rdu_compiler.passes import get_all_passes

    if verify_each is None:
        verify_each = os.environ.get("RDU_VERIFY_EACH_PASS") == "1"
    fresh = source if source is not None else _cloner(module)
    ctx = make_context()
    registry = get_all_passes()
    for i, spec in enumerate(passes):
        name = spec.split("{", 1)[0]
        if on_pass:
            on_pass(name)
        try:
            pp = PassPipeline.parse_spec({k: v for k, v in registry.items()}, spec)
            for p in pp.passes:
                _apply(p, ctx, module)
            last = i == len(passes) - 1
            if name not in _BEFORE_CONVERSION and (verify_each or last):
                module.verify()
            if snapshots is not None:
                snapshots[name] = str(module)
        except VerifyException as e:
            if not verify_each:  # find the pass that broke it, then report that one
                run_pipeline(fresh(), passes, repro_dir=repro_dir, verify_each=True)
            err = CompileError(name, str(e))
            err.reproducer = _write_repro(_input_of(fresh, passes[:i]), name, repro_dir)
            err.pass_name = spec
            raise err from e
        except (CompileError, DiagnosticException) as e:
            if not verify_each and i > 0:  # an earlier pass's invalid output may be the cause
                run_pipeline(fresh(), passes[:i], repro_dir=repro_dir, verify_each=True)
            err = e if isinstance(e, CompileError) else CompileError(name, str(e))
            err.reproducer = _write_repro(_input_of(fresh, passes[:i]), name, repro_dir)
            err.pass_name = spec
            raise err from e
    return module


#: Passes on the imported linalg, not verified after: xDSL's tensor/linalg verifiers refuse
#: some valid torch-mlir IR (a rank-0 `tensor.expand_shape`), which rdu-convert-linalg
#: lowers; the module is first verified after it, as the rdu program it then is.
_BEFORE_CONVERSION = {"rdu-fold-constants"}


def _cloner(module: ModuleOp) -> Callable[[], ModuleOp]:
    """A factory of copies of `module` as it is now (one clone kept)."""
    kept = module.clone()
    return kept.clone


def _input_of(fresh: Callable[[], ModuleOp], passes: list[str]) -> str:
    """The text of the module `passes` make of a fresh pipeline input: the input of the
    pass after them (the reproducer of its failure)."""
    module = fresh()
    if passes:
        run_pipeline(module, passes, verify_each=False, source=lambda: module)
    return str(module)


def _apply(p: ModulePass, ctx: object, module: ModuleOp) -> None:
    p.apply(ctx, module)  # type: ignore[arg-type]


def _write_repro(text: str, name: str, repro_dir: str | None) -> str:
    folder = repro_dir or tempfile.gettempdir()
    os.makedirs(folder, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix=f"{name}-input-", suffix=".mlir", dir=folder)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def set_fabric(module: ModuleOp, fabric: str) -> None:
    module.attributes[FABRIC_ATTR] = StringAttr(fabric)
