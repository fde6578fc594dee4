"""rdu-opt: xdsl-opt with the rdu dialect and passes registered.

Input errors (a missing or unreadable file, binary or malformed MLIR, an unknown pass,
bad pass-option syntax, an unknown option, a module the verifier refuses, a pass
refusing the module) print one paragraph, `error: ...`, and exit with status 2;
`--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import IO

from xdsl.dialects.builtin import ModuleOp
from xdsl.utils.exceptions import ArgSpecParseError, DiagnosticException, ParseError
from xdsl.xdsl_opt_main import xDSLOptMain

from rdu_compiler.errors import RduError
from rdu_compiler.ir import make_parser


class InputError(RduError):
    """rdu-opt's input (file, pipeline or module) is refused."""


class RduOptMain(xDSLOptMain):
    """`rdu-opt file.mlir -p 'rdu-tile{fabric=tiny}'`: every xDSL and rdu pass and dialect."""

    def register_all_arguments(self, arg_parser: argparse.ArgumentParser) -> None:
        super().register_all_arguments(arg_parser)
        arg_parser.add_argument("--debug", action="store_true", help="show tracebacks of input errors")
        arg_parser.formatter_class = argparse.RawDescriptionHelpFormatter
        plain = arg_parser.format_help

        def format_help() -> str:  # the epilog imports every pass: only when help is printed
            arg_parser.epilog = pass_help()
            return plain()

        arg_parser.format_help = format_help

    def register_all_dialects(self) -> None:
        super().register_all_dialects()
        from rdu_compiler.dialects.rdu import RDU

        self.ctx.load_dialect(RDU)

    def register_all_passes(self) -> None:
        super().register_all_passes()
        from rdu_compiler.passes import get_all_passes

        for name, factory in get_all_passes().items():
            self.register_pass(name, factory)

    def register_all_frontends(self) -> None:
        super().register_all_frontends()

        def parse_mlir(io: IO[bytes]) -> ModuleOp:
            data = io.read()
            try:
                source = data.decode()
            except UnicodeDecodeError as e:
                raise InputError(
                    f"{self.get_input_name()}: not MLIR text (byte {e.start} is not UTF-8: {data[e.start:e.start + 1]!r}); "
                    "rdu-opt reads textual .mlir files"
                ) from e
            parser = make_parser(self.ctx, source, self.get_input_name())
            return parser.parse_module(not self.args.no_implicit_module)

        self.available_frontends["mlir"] = parse_mlir


def pass_help() -> str:
    """The rdu passes with their options (`name: type = default`) and what each does: the
    epilog of `rdu-opt --help`, the place a bad `-p` option error points to."""
    import dataclasses

    from rdu_compiler.passes import get_all_passes

    lines = ["rdu passes (-p 'name{option=value option=value}'):"]
    for name, factory in get_all_passes().items():
        cls = factory()
        options = " ".join(f"{f.name}: {f.type} = {f.default!r}" for f in dataclasses.fields(cls))
        lines.append(f"  {name}{{{options}}}" if options else f"  {name}")
        doc = (cls.__doc__ or "").strip().splitlines()
        if doc:
            lines.append(f"      {doc[0]}")
    lines.append("The compiler's own IR may hold ops xDSL does not register (linalg.batch_matmul, tm_tensor.*):")
    lines.append("read it with --allow-unregistered-dialect (the reproducer commands the compiler prints add it).")
    return "\n".join(lines)


def _unregistered_hint(text: str) -> str:
    if "is not registered" in text:
        return (text + "\nthis op is not registered with xDSL; if the file is the compiler's own output "
                "(--emit linalg, a reproducer), run rdu-opt with --allow-unregistered-dialect")
    return text


def _pipeline_error(e: BaseException) -> InputError:
    text = " ".join(str(e).split("\n", 1)[-1].split()) if isinstance(e, ArgSpecParseError) else str(e)
    return InputError(f"bad pass pipeline (-p): {text}; check the pass names and their options (rdu-opt --help)")


def main(args: Sequence[str] | None = None) -> None:
    """Run rdu-opt; an input error prints one paragraph and exits with status 2."""
    argv = list(sys.argv[1:] if args is None else args)
    debug = "--debug" in argv
    try:
        try:
            tool = RduOptMain(args=argv)
        except (ArgSpecParseError, ValueError) as e:  # -p could not be parsed
            raise _pipeline_error(e) from e
        try:
            tool.run()
        except OSError as e:  # missing input, unwritable -o
            raise InputError(f"{e.filename or 'rdu-opt'}: {e.strerror or e}; check the path") from e
        except (ParseError, DiagnosticException) as e:  # malformed MLIR, verifier failure
            lines = [line for line in str(e).splitlines() if line.strip()]  # one paragraph, caret kept
            raise InputError(_unregistered_hint("\n".join(lines))) from e
        except ValueError as e:
            if "file extension" not in str(e):
                raise
            raise InputError(f"{tool.get_input_name()}: {e}; rdu-opt reads .mlir files (rename the file, or pass "
                             "-f mlir to read it as MLIR)") from e
    except RduError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
