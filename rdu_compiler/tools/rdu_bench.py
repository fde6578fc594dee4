"""rdu-bench: -O0 vs -O1 for a model.py or a built-in decoder-layer shape.

    rdu-bench examples/mlp.py --run
    rdu-bench --builtin llama2-7b-prefill --json out.json
    rdu-bench --builtin llama3.1-8b-decode --sockets 16 --tp 16 --kernel-looping -O 1

Prints a table (launches, estimated time, % of roofline, PCU/PMU utilization, bytes per
tier, emulator time) and writes JSON with --json. Exit 2 with a message on errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape

from rdu_compiler.errors import RduError


def _builtins() -> dict[str, Callable[[], tuple[Any, tuple[Any, ...]]]]:
    from rdu_compiler.bench import models

    return {
        "llama2-7b-prefill": lambda: models.llama_layer(models.LLAMA2_7B_PREFILL),
        "llama2-7b-decode": lambda: models.llama_layer(models.LLAMA2_7B_DECODE),
        "llama3.1-8b-decode-layer": lambda: models.llama_layer(models.LLAMA31_8B_DECODE),
        "llama3.1-8b-decode": lambda: models.hf_llama31_8b_decode(8192),  # HF model, 32 layers, 8K context
    }


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="rdu-bench", description="Compare -O0 and -O1 on an RDU fabric.")
    p.add_argument("model", nargs="?", help="a model.py (model + example_inputs, or get_model())")
    p.add_argument("--builtin", choices=sorted(_builtins()),
                   help="a built-in shape-only model (bf16, meta tensors): a decoder layer, or llama3.1-8b-decode, "
                        "HF's LlamaForCausalLM (Llama-3.1-8B config) decoding one token at 8K context")
    p.add_argument("--fabric", default="sn40l",
                   help="preset or .toml (default sn40l; with --sockets/--tp above its node, the node preset that extends it)")
    p.add_argument("--sockets", type=int, default=None, metavar="N", help="sockets the program may use (default: --tp)")
    p.add_argument("-O", dest="levels", type=int, action="append", choices=(0, 1), default=None,
                   help="opt level to compile (repeat for both; default -O 0 -O 1)")
    p.add_argument("--run", action="store_true", help="also time the emulator (real weights only)")
    p.add_argument("--json", default=None, help="write the figures as JSON here")
    p.add_argument("--tp", type=int, default=1, metavar="N", help="tensor parallelism over N sockets (rdu-shard)")
    p.add_argument("--kernel-looping", action="store_true", help="loop repeated layers (rdu-kernel-loop)")
    p.add_argument("--debug", action="store_true")
    args = p.parse_args(argv)
    try:
        result = _run(args)
    except RduError as e:
        if args.debug:
            raise
        Console(stderr=True).print("[bold red]error:[/] " + escape(str(e)), highlight=False)
        sys.exit(2)
    from rdu_compiler.bench import print_table

    console = Console() if Console().is_terminal else Console(width=132)
    print_table(result, console)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result.to_dict(), f, indent=2)


def _run(args: argparse.Namespace) -> Any:
    from rdu_compiler.bench import compare

    if args.builtin:
        model, inputs = _builtins()[args.builtin]()
        name = args.builtin
    elif args.model:
        from rdu_compiler.frontend.torch.model_file import load_model_file

        model, inputs = load_model_file(args.model)
        name = args.model
    else:
        raise RduError("give a model.py or --builtin NAME (see rdu-bench --help)")
    return compare(model, inputs, fabric=args.fabric, name=name, run_emulator=args.run, tp=args.tp,
                   sockets=args.sockets, kernel_looping=args.kernel_looping, levels=tuple(args.levels or (0, 1)))


if __name__ == "__main__":
    main()
