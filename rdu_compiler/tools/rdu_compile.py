"""rdu-compile: compile a model.py (or model.onnx) for the RDU, run it on the emulator, report.

    rdu-compile examples/gpt2_small.py --check
    rdu-compile model.py --fabric tiny -O0 -o out/ --emit linalg
    rdu-compile model.onnx --input-shape input=1x3x224x224 --check

Writes DIR/model.mlir, DIR/weights.safetensors and DIR/report.json (only when every
stage succeeded, --check included), prints the report, and with --check compares the
emulator's outputs with PyTorch eager (a model.py) or ONNX's reference evaluator (a
model.onnx; `tools.check`), and says which. Errors print one paragraph and exit with status 2
(--debug shows the traceback). DIR is never emptied: a non-empty DIR that is not an
earlier output is refused unless --force, and then only the compiler's files in it are
replaced (see `tools.outputs`); after a signal or a failure DIR is the old one or the
new one, with no temporary left beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from rdu_compiler.errors import RduError
from rdu_compiler.pipeline import CHECK, LOAD, RUN, stages
from rdu_compiler.tools.check import TORCH_REFERENCE, cli_compile, compare
from rdu_compiler.tools.outputs import (
    Interrupted,
    OutputError,
    check_output_dir,
    check_writable_path,
    signals_as_exceptions,
    write_outputs,
)
from rdu_compiler.tools.report import print_check, print_report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="rdu-compile", description="Compile a PyTorch model.py or an ONNX model for an RDU fabric.")
    p.add_argument("model", help="a model.py defining `model` and `example_inputs`, or `get_model()`; or a model.onnx")
    p.add_argument("--input-shape", action="append", metavar="NAME=SHAPE", help="ONNX: static shape of an input, e.g. input=1x3x224x224 (repeatable)")
    p.add_argument("--fabric", default="sn40l", help="preset name (sn40l, tiny) or a fabric .toml (default: sn40l)")
    p.add_argument("-O", dest="opt_level", type=int, choices=(0, 1), default=1, help="0: unfused baseline, 1: fused (default)")
    p.add_argument("--tp", type=int, default=1, metavar="N",
                   help="tensor parallelism: split the program over N sockets of the fabric's node (rdu-shard; default 1)")
    p.add_argument("--sockets", type=int, default=None, metavar="N", help="sockets the program may use (default: --tp; with --pp at least tp x pp)")
    p.add_argument("--target", choices=("emulator", "triton"), default="emulator",
                   help="where to run the program: the RDU emulator, or Triton kernels (GPU; the interpreter "
                        "without one) written to DIR/kernels.py")
    p.add_argument("--emit", choices=("linalg", "rdu", "placed"), default="placed", help="what DIR/model.mlir holds")
    p.add_argument("-o", "--output", default=None, help="output folder (default: rdu_out/<model name>)")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty -o folder that is not an earlier output (only the compiler's "
                        "own files there are replaced; nothing else is touched), and replace a --trace file "
                        "that is not an earlier trace")
    p.add_argument("--check", action="store_true", help="compare the outputs with PyTorch eager (model.py) or onnx.reference (model.onnx)")
    p.add_argument("--no-run", action="store_true", help="compile and report only; do not emulate")
    p.add_argument("--fold-constants", action="store_true", help="evaluate input-independent subgraphs at import")
    p.add_argument("--plot", metavar="DIR", default=None, help="write placement maps per section and a timeline (PNG + SVG) to DIR")
    p.add_argument("--trace", metavar="FILE", default=None, help="write a Perfetto/Chrome trace JSON (modelled time, one track per kernel)")
    p.add_argument("--pp", type=int, default=1, metavar="N",
                   help="pipeline-parallel stages, one per socket, or per --tp sockets with --tp (rdu-pipeline; needs a "
                        "multi-socket --fabric such as sn40l-node8: tp x pp sockets)")
    p.add_argument("--microbatches", type=int, default=1, metavar="M",
                   help="with --pp: micro-batches per call (the example inputs are one); the time includes the bubble")
    p.add_argument("--kernel-looping", action="store_true",
                   help="record repeated layers as kernel loops (rdu-kernel-loop): one looped call launches each "
                        "body section once; the report says how many launches were saved")
    p.add_argument("--tier-rows", type=int, default=None, metavar="HBM_BYTES",
                   help="split embedding tables by row (rdu-tier-rows): the hottest rows in HBM_BYTES of HBM, the rest "
                        "in DDR, under a stated Zipf law (--zipf); a model.py on one socket")
    p.add_argument("--zipf", type=float, default=1.05, metavar="S",
                   help="with --tier-rows: the Zipf exponent assumed for every table's row frequencies (IDs numbered "
                        "hot-first); default 1.05")
    p.add_argument("--resident-index", action="store_true",
                   help="state that every collisionless lookup's cuckoo index stays in its probe's PMUs across calls "
                        "(rdu-tile{resident_index=true}): per-call bytes and time exclude it, the report gives its "
                        "first-call load; a model.py on one socket")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=132)  # reports piped to a file keep their columns
    try:
        run(args, console)
    except RduError as e:
        if args.debug:
            raise
        Console(stderr=True).print("[bold red]error:[/] " + escape(str(e)), highlight=False)
        sys.exit(2)
    except Interrupted as e:
        Console(stderr=True).print(
            f"interrupted (signal {e.signum}); the output folder is either as it was or completely written, "
            "and no temporary is left"
        )
        sys.exit(128 + e.signum)
    except KeyboardInterrupt:
        sys.exit(130)


def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    import torch

    from rdu_compiler import api
    from rdu_compiler.fabric import node_fabric
    from rdu_compiler.frontend.torch.model_file import load_model_file

    args.fabric = node_fabric(args.fabric, args.tp * args.pp, args.sockets)  # "sn40l" --sockets 16: its rack preset
    out_dir = Path(args.output or Path("rdu_out") / Path(args.model).stem)
    check_output_dir(out_dir, args.force)  # refuse before compiling, not after
    if args.plot:
        check_writable_path(Path(args.plot), "--plot", folder=True)
    if args.trace:
        check_writable_path(Path(args.trace), "--trace", folder=False, force=args.force)
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console, transient=True)
    timings: dict[str, float] = {}
    with progress:
        tier_rows = {"hbm_bytes": args.tier_rows, "zipf": args.zipf} if args.tier_rows is not None else None
        if Path(args.model).suffix.lower() == ".onnx" and (tier_rows or args.resident_index):
            raise RduError("--tier-rows and --resident-index apply to a model.py only (not wired into the ONNX path "
                           "yet); drop them")
        all_stages = stages(args.fabric, args.opt_level, run=not args.no_run, check=args.check and not args.no_run, tp=args.tp, pp=args.pp,
                            kernel_looping=args.kernel_looping, tier_rows="on" if tier_rows else "")
        task = progress.add_task(LOAD, total=len(all_stages))
        last = [time.perf_counter(), LOAD]

        def stage(name: str) -> None:
            now = time.perf_counter()
            timings[last[1]] = now - last[0]  # type: ignore[index, operator]
            last[0], last[1] = now, name
            progress.update(task, description=name, advance=1)

        if Path(args.model).suffix.lower() == ".onnx" and (args.pp != 1 or args.microbatches != 1):
            raise RduError("--pp and --microbatches apply to a model.py only (the ONNX path compiles one socket); drop them")
        if args.pp != 1 and (args.target == "triton" or args.plot):
            raise RduError("--pp compiles one program per socket; --target triton and --plot handle one-socket "
                           "programs only (not implemented for stage programs yet; --trace shows every stage's "
                           "socket); drop them or --pp")
        if Path(args.model).suffix.lower() == ".onnx":  # ONNX: --check against onnx's reference evaluator
            program, check = cli_compile(args, stage, str(out_dir.parent))
        else:
            if args.input_shape:
                raise RduError("--input-shape applies to ONNX models only; a model.py sets shapes with example_inputs")
            model, example_inputs = load_model_file(args.model)
            if not args.no_run or args.target == "triton":
                _refuse_meta(args.model, model, example_inputs)
            program = api.compile(
                model, example_inputs, fabric=args.fabric, opt_level=args.opt_level,
                fold_constants=args.fold_constants, on_stage=stage, repro_dir=str(out_dir.parent),
                keep_ir=args.emit == "rdu", tp=args.tp, sockets=args.sockets,
                pp=args.pp, microbatches=args.microbatches, kernel_looping=args.kernel_looping,
                tier_rows=tier_rows, resident_index=args.resident_index,
            )
            outputs = None
            if not args.no_run:
                stage(RUN)
                outputs = program.run(*example_inputs, target=args.target)
            check = None
            if args.check and outputs is not None:
                stage(CHECK)
                with torch.no_grad():
                    reference = model(*example_inputs)
                check = compare(outputs, reference)
                check["reference"] = TORCH_REFERENCE
                program.report["check"] = check
        stage("done")
    program.report["compile_stages_s"] = timings
    failed = check is not None and not check["ok"]
    if not failed:  # a failed --check leaves DIR as it was
        _write_outputs(program, out_dir, args.emit, getattr(args, "target", "emulator"))
    print_report(console, program.report, args.model)
    if check is not None:
        print_check(console, check)
    if check is not None and failed:
        raise RduError(
            f"--check failed: relative L2 error {check['rel_l2']:.3e} exceeds {check['tolerance']:.0e}; "
            f"nothing was written ({out_dir} is left as it was)"
        )
    kernels = ", kernels.py" if getattr(args, "target", "emulator") == "triton" else ""
    weights = " (no weights.safetensors: the weights are on the meta device)" if program.shape_only else ""
    written = "model.mlir, report.json" if program.shape_only else "model.mlir, weights.safetensors, report.json"
    console.print(f"wrote {out_dir}/{written}{kernels}{weights}")
    with signals_as_exceptions():  # SIGTERM: the trace's temporary is removed, not left behind
        _write_pictures(program, args, console)
    return program.report


def _refuse_meta(path: str, model: Any, example_inputs: Any) -> None:
    """A model whose weights or inputs are on the meta device has no data to save or run.

    Raises:
        RduError: naming the first meta tensor.
    """
    import torch
    from torch.utils import _pytree as pytree

    named = []
    if isinstance(model, torch.nn.Module):
        named = [(f"parameter '{n}'", t) for n, t in [*model.named_parameters(), *model.named_buffers()]]
    leaves, _ = pytree.tree_flatten(example_inputs)
    named += [(f"example_inputs[{i}]", t) for i, t in enumerate(leaves)]
    for name, t in named:
        if isinstance(t, torch.Tensor) and t.is_meta:
            raise RduError(
                f"{path}: {name} is on the meta device (a shape without data), so the program cannot run "
                "(nor be written as Triton kernels with their weights); pass --no-run for a compile-only report "
                "(model.mlir and report.json, no weights.safetensors), or build the model and example_inputs "
                "with real tensors (e.g. load a checkpoint)"
            )


def _write_pictures(program: Any, args: argparse.Namespace, console: Console) -> None:
    """--plot: placement maps and timeline; --trace: the Perfetto trace of the run."""
    if args.plot:
        from rdu_compiler.tools.plots import maps_left_out, write_plots

        try:
            paths = write_plots(program.module, program.fabric, program.report, args.plot)
        except OSError as e:
            raise OutputError(f"--plot {args.plot}: cannot write the pictures ({e}); choose another folder") from e
        console.print(f"wrote {len(paths)} pictures to {args.plot}/")
        left_out = maps_left_out(program.module)
        if left_out:
            console.print(f"  {left_out}", highlight=False)
    if args.trace:
        from rdu_compiler.runtime.trace import write_trace

        try:
            path = write_trace(args.trace, program.report)
        except OSError as e:
            raise OutputError(f"--trace {args.trace}: cannot write the trace ({e}); choose another path") from e
        console.print(f"wrote trace {path} (open in ui.perfetto.dev)")


def _write_outputs(program: Any, out_dir: Path, emit: str, target: str = "emulator") -> None:
    """Write DIR through a temporary folder beside it (`tools.outputs.write_outputs`).

    Raises:
        OutputError: DIR cannot be written.
        Interrupted: SIGTERM/SIGINT/SIGHUP during the write (DIR is then the old one or the new one).
    """
    write_outputs(out_dir, lambda tmp: _fill(program, tmp, emit, target))


def _fill(program: Any, tmp: Path, emit: str, target: str) -> None:
    """The compiler's files, written into the (temporary) folder `tmp`."""
    program.save(str(tmp))
    if target == "triton":  # kernels.py + weights (with the program's dense constants)
        program.save_triton(str(tmp))
    if emit == "linalg":
        (tmp / "model.mlir").write_text(program.linalg)
    elif emit == "rdu":
        from rdu_compiler.api import kernel_source_comments

        unplaced = program.snapshots.get("rdu-fuse") or program.snapshots["rdu-convert-linalg"]
        (tmp / "model.mlir").write_text(kernel_source_comments(program.report) + unplaced)
    (tmp / "report.json").write_text(json.dumps(program.report, indent=2, default=str))


if __name__ == "__main__":
    main()
