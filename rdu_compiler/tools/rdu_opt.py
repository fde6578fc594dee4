"""rdu-opt: xdsl-opt with the rdu dialect and passes registered."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import IO

from xdsl.xdsl_opt_main import xDSLOptMain

from rdu_compiler.errors import RduError
from rdu_compiler.ir import make_parser


class RduOptMain(xDSLOptMain):
    """`rdu-opt file.mlir -p 'rdu-tile{fabric=tiny}'`: every xDSL and rdu pass and dialect."""

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

        def parse_mlir(io: IO[bytes]) -> object:
            parser = make_parser(self.ctx, io.read().decode(), self.get_input_name())
            return parser.parse_module(not self.args.no_implicit_module)

        self.available_frontends["mlir"] = parse_mlir


def main(args: Sequence[str] | None = None) -> None:
    """Run rdu-opt; a pass refusing the input prints its message and exits with status 2."""
    try:
        RduOptMain(args=args).run()
    except RduError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
