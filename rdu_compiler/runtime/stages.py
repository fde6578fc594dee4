"""Run a pipelined program (`rdu-pipeline`): the stage programs in stage order, tensors
passed through the channels of their `rdu.send` / `rdu.recv`.

Each stage program runs on its own `Emulator` (section by section, as a one-socket
program); the channels are a dict per micro-batch shared by the stages. `run` takes one
micro-batch (the shape the program was compiled for) and returns the original function's
results, in order (`rdu.results` says which stage returns which). `run_microbatches` runs
several micro-batches in the fill-drain (GPipe) order: at step t stage s works on
micro-batch t - s, so a stage may hold micro-batch m + 1 while the next works on m, and the
channels keep the micro-batches apart. The results do not depend on the schedule (each
micro-batch is independent); running it shows the channels carry each micro-batch's own
tensors.

With tensor parallelism (`rdu.tp = T`, tp x pp) each stage runs on a `NodeEmulator` over
its T sockets, and rank r of a stage sends to and receives from rank r of its peers (each
rank its own channel table per micro-batch).

Before running, the program is refused (EmulatorError) unless its transfers match and
cannot deadlock (`rdu.verify_channels`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp
from xdsl.ir import Attribute
from xdsl.utils.exceptions import VerifyException

from rdu_compiler.dialects import rdu
from rdu_compiler.errors import EmulatorError
from rdu_compiler.fabric import Fabric
from rdu_compiler.ir import int_values
from rdu_compiler.passes.shard_layout import module_tp
from rdu_compiler.runtime.emulator import Emulator
from rdu_compiler.runtime.node import NodeEmulator


def is_pipelined(module: ModuleOp) -> bool:
    """Whether `module` is a set of stage programs (functions with `rdu.stage`)."""
    return any(isinstance(op, func.FuncOp) and rdu.STAGE_ATTR in op.attributes for op in module.ops)


def _indices(fn: func.FuncOp, name: str) -> list[int]:
    attr = fn.attributes.get(name)
    if not isinstance(attr, DenseArrayBase):
        raise EmulatorError(f"stage program @{fn.sym_name.data} has no `{name}`; run rdu-pipeline to build stage programs")
    return int_values(attr)


def argument_types(module: ModuleOp) -> list[Attribute]:
    """The types of the unstaged function's arguments, in its order (each stage program
    takes some of them, `rdu.args`); a one-function module's own argument types."""
    if not is_pipelined(module):
        fn = next(op for op in module.ops if isinstance(op, func.FuncOp))
        return [a.type for a in fn.body.block.args]
    types: dict[int, Attribute] = {}
    for _, fn in rdu.stage_programs(module):
        for i, a in zip(_indices(fn, "rdu.args"), fn.body.block.args, strict=True):
            types[i] = a.type
    return [types[i] for i in sorted(types)]


@dataclass
class StagedStats:
    """Per stage (in stage order), per micro-batch: what the stage's emulator measured."""

    stages: list[list[Any]] = field(default_factory=list)  # EmulatorStats, or NodeStats per stage with tp > 1

    def to_dict(self) -> dict[str, Any]:
        runs = [s for per_stage in self.stages for s in per_stage]
        runs = [x for s in runs for x in getattr(s, "sockets", [s])]  # tp x pp: every socket of a stage
        return {
            "hbm_bytes": sum(s.hbm_bytes for s in runs),
            "ddr_bytes": sum(s.ddr_bytes for s in runs),
            "tiles": sum(s.tiles for s in runs),
            "wall_s": sum(s.wall_s for s in runs),
            "stages": [[s.to_dict() for s in per_stage] for per_stage in self.stages],
        }


class StagedEmulator:
    """The stage programs of a pipelined module, each on its own `Emulator`."""

    def __init__(self, module: ModuleOp, fabric: Fabric):
        """Raises: EmulatorError: the module does not verify (a send without its recv, a
        deadlock: the message names the channel), or a stage breaks a rule of `fabric`."""
        try:
            rdu.verify_channels(module)
            programs = rdu.stage_programs(module)
        except VerifyException as e:
            raise EmulatorError(f"the stage programs cannot run, so the emulator refuses them: {e}") from e
        if [s for s, _ in programs] != list(range(len(programs))):
            raise EmulatorError(f"stages {[s for s, _ in programs]} are not numbered 0..{len(programs) - 1}; "
                                "run rdu-pipeline to build stage programs")
        self.tp = module_tp(module)
        if self.tp > 1:  # tp x pp: each stage an SPMD program on its own tp sockets (runtime/node.py)
            self.stages: list[Any] = [NodeEmulator(module, fabric, fn) for _, fn in programs]
        else:
            self.stages = [Emulator(module, fabric, fn) for _, fn in programs]
        self.args = [_indices(fn, "rdu.args") for _, fn in programs]
        self.results = [_indices(fn, "rdu.results") for _, fn in programs]
        self.num_args = 1 + max((i for a in self.args for i in a), default=-1)
        self.num_results = sum(len(r) for r in self.results)

    def run(self, args: list[np.ndarray]) -> tuple[list[np.ndarray], StagedStats]:
        """Run one micro-batch (one array per argument of the unstaged function).

        Raises:
            EmulatorError: wrong arguments, or a stage's run failed.
        """
        outputs, stats = self.run_microbatches([args])
        return outputs[0], stats

    def run_microbatches(self, batches: list[list[np.ndarray]]) -> tuple[list[list[np.ndarray]], StagedStats]:
        """Run each micro-batch of `batches` through the stages in fill-drain order (module
        docstring); returns each micro-batch's results and the per-stage statistics."""
        for b in batches:
            if len(b) != self.num_args:
                raise EmulatorError(f"the program takes {self.num_args} arguments, got {len(b)}")
        p, m = len(self.stages), len(batches)
        channels: list[dict[int, Any]] = [{} for _ in range(m)]
        rank_channels = [[{} for _ in range(self.tp)] for _ in range(m)]  # tp x pp: micro-batch, rank
        outputs: list[list[Any]] = [[None] * self.num_results for _ in range(m)]
        stats = StagedStats([[] for _ in range(p)])
        for step in range(m + p - 1):
            for s in range(p):
                mb = step - s
                if not 0 <= mb < m:
                    continue
                em = self.stages[s]
                if self.tp > 1:  # rank r of every stage shares rank r's channels: r talks to r
                    em.rank_channels = rank_channels[mb]
                else:
                    em.channels = channels[mb]
                outs, st = em.run([batches[mb][i] for i in self.args[s]])
                for i, o in zip(self.results[s], outs, strict=True):
                    outputs[mb][i] = o
                stats.stages[s].append(st)
        return outputs, stats


def make_emulator(module: ModuleOp, fabric: Fabric) -> Any:
    """The emulator for `module`: staged for a pipelined program, else `runtime.node`'s
    (the node's for a tensor-parallel program, one socket's otherwise)."""
    from rdu_compiler.runtime.node import emulator_for

    return StagedEmulator(module, fabric) if is_pipelined(module) else emulator_for(module, fabric)
