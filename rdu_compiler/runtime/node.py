"""The node emulator: a tensor-parallel (SPMD) program on every socket of its group, in numpy.

`rdu-shard{tp=N}` makes one program every socket runs on its own shard of the weights.
`NodeEmulator.run` takes the arguments of the unsharded program (user inputs and whole
weights), gives socket `r` its shard of every argument the program records one for
(`rdu.shard = array<i64: dim, tp, blocks>`, `dialects/rdu/collectives.shard_of`), then
steps all sockets through the program in lock-step, op by op: each `rdu.section` runs on
each socket with the single-socket `Emulator` (same tiles, same byte counts), and the
collectives run across the sockets' values:

- `rdu.all_reduce`: the sum over sockets 0, 1, ..., N-1 in that order (float32 adds in
  a fixed order, so every socket gets the same bits);
- `rdu.all_gather`: the shards put back together (`gather_shards`; over `group` < tp
  distinct shards, shard q is socket q x tp / group's);
- `rdu.shard`: socket r's slice of its own copy, piece `(r // (tp / ways)) % group` (no
  data crosses sockets).

The results are replicated by construction (the pass gathers / reduces them); the node
emulator checks that every socket returns the same values and returns socket 0's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp

from rdu_compiler.dialects import rdu
from rdu_compiler.dialects.rdu.collectives import gather_shards, shard_of
from rdu_compiler.errors import EmulatorError
from rdu_compiler.fabric import Fabric
from rdu_compiler.passes.shard_layout import arg_shards, module_tp
from rdu_compiler.runtime.emulator import Emulator, EmulatorStats, Env


@dataclass
class CollectiveStats:
    """One collective of a run: op name, bytes each socket contributes, group size."""

    op: str
    bytes_per_socket: int
    group: int


@dataclass
class NodeStats:
    """A node run: each socket's `EmulatorStats` and the collectives executed."""

    sockets: list[EmulatorStats] = field(default_factory=list)
    collectives: list[CollectiveStats] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Socket 0's figures at the top (as one socket's `EmulatorStats.to_dict`: every socket
        runs the same program), then each socket's and the collectives."""
        return {
            **self.sockets[0].to_dict(),
            "sockets": [s.to_dict() for s in self.sockets],
            "collectives": [{"op": c.op, "bytes_per_socket": c.bytes_per_socket, "group": c.group}
                            for c in self.collectives],
        }


class NodeEmulator:
    """Compiled once per sharded program; `run` may be called many times."""

    def __init__(self, module: ModuleOp, fabric: Fabric, fn: func.FuncOp | None = None):
        """`fn`: one stage program of a tp x pp module (default: the module's function).

        Raises: EmulatorError: as `Emulator`, or the program is sharded for more
        sockets than the fabric's node has."""
        self.tp = module_tp(module)
        if self.tp > fabric.node.sockets:
            raise EmulatorError(
                f"the program is sharded for tp = {self.tp} sockets but fabric '{fabric.name}' has "
                f"{fabric.node.sockets}; run it on the node it was compiled for"
            )
        self.emulator = Emulator(module, fabric, fn)
        self.fn: func.FuncOp = self.emulator.fn
        self.shards = arg_shards(self.fn)
        self.rank_channels: list[dict[int, Any]] | None = None  # a stage's rdu.send/recv, rank r's own (runtime/stages.py)

    def run(self, args: list[np.ndarray]) -> tuple[list[np.ndarray], NodeStats]:
        """Run the program on every socket; `args` are the unsharded program's arguments.

        Raises:
            EmulatorError: wrong arguments, a failed runtime check on a socket, or sockets
                that disagree on a replicated result.
        """
        em, tp = self.emulator, self.tp
        if len(args) != len(self.shards):
            raise EmulatorError(f"the program takes {len(self.shards)} arguments, got {len(args)}")
        envs: list[Env] = []
        for r in range(tp):
            local = []
            for i, (a, s) in enumerate(zip(args, self.shards, strict=True)):
                arr = np.asarray(a)
                if s is not None:
                    dim, group, blocks = s[:3]
                    ways = s[3] if len(s) > 3 else group  # distinct shards: socket r holds r // (tp / ways)
                    if arr.ndim <= dim or arr.shape[dim] % (ways * blocks):
                        raise EmulatorError(f"argument {i}: shape {arr.shape} cannot be split {ways} ways along "
                                            f"dim {dim} in {blocks} blocks, as the program's shard needs")
                    arr = shard_of(arr, dim, ways, blocks, r // (tp // ways))
                local.append(arr)
            envs.append(em.bind(local))
        stats = NodeStats([EmulatorStats() for _ in range(tp)])
        outputs: list[list[np.ndarray]] = [[] for _ in range(tp)]
        for op in self.fn.body.block.ops:
            if isinstance(op, rdu.SectionOp):
                for r in range(tp):
                    stats.sockets[r].sections.append(em.section(op, envs[r]))
            elif isinstance(op, rdu.AllReduceOp):
                total = np.array(envs[0][op.source], copy=True)
                for env in envs[1:]:
                    total = total + env[op.source]
                for env in envs:
                    env[op.result] = total
                stats.collectives.append(CollectiveStats(op.name, total.nbytes, tp))
            elif isinstance(op, rdu.AllGatherOp):
                group = op.group.value.data  # the distinct shards: socket q x tp / group holds shard q
                parts = [np.asarray(envs[q * (tp // group)][op.source]) for q in range(group)]
                whole = gather_shards(parts, op.dim.value.data, op.n_blocks)
                for env in envs:
                    env[op.result] = whole
                stats.collectives.append(CollectiveStats(op.name, parts[0].nbytes, group))
            elif isinstance(op, rdu.ShardOp):
                group = op.group.value.data
                for r, env in enumerate(envs):
                    piece = (r // (tp // op.n_ways)) % group
                    env[op.result] = shard_of(np.asarray(env[op.source]), op.dim.value.data, group, op.n_blocks, piece)
            elif isinstance(op, func.ReturnOp):
                for r, env in enumerate(envs):
                    outputs[r] = [np.asarray(env[v]) for v in op.operands]
            else:
                for r, env in enumerate(envs):
                    if self.rank_channels is not None:
                        em.channels = self.rank_channels[r]  # rank r's transfers go to rank r of the peer stage
                    em._run_plain(op, env)  # noqa: SLF001
        for st in stats.sockets:
            st.wall_s = sum(sec.wall_s for sec in st.sections)
        for r in range(1, tp):
            for i, (a, b) in enumerate(zip(outputs[0], outputs[r], strict=True)):
                if not np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"):
                    raise EmulatorError(f"result {i}: socket {r} differs from socket 0; a replicated result must "
                                        "agree on every socket (an rdu-shard bug: report it with the program)")
        return outputs[0], stats


def emulator_for(module: ModuleOp, fabric: Fabric) -> Emulator | NodeEmulator:
    """The emulator of a program: one socket's, or the node's for a tensor-parallel one."""
    return NodeEmulator(module, fabric) if module_tp(module) > 1 else Emulator(module, fabric)
