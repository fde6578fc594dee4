"""rdu-pipeline: cut the kernel graph into pipeline stages, one function per stage.

`rdu-pipeline{pp=N microbatches=M}` splits the one function of an unsectioned program into
N stage programs `@<name>_stage0` ... `@<name>_stage{N-1}` (stage s runs on socket s),
each a contiguous run of its kernels in program order:

- **Where the cuts go** (`plan.stages`): the slowest stage as fast as possible, then, among
  the partitions within `imbalance` of that (default 0.25 [NF], see `plan.stages`), the
  one where the fewest activation bytes cross the cuts. A kernel's work is its roofline
  time alone on one socket, max(FLOPs / peak FLOP/s of its dtype, bytes it reads and
  writes / HBM bandwidth), untiled: the cost model's estimate before sections exist. Work,
  not weight bytes, so that a compute-bound prefill is balanced as well as a
  weight-streaming decode (for decode the two agree: a kernel's bytes are its weights).
- **What crosses**: a value computed in stage s and read in stage t > s leaves s through
  `rdu.send` (at the end of s, one per consumer stage, sent directly) and enters t through
  `rdu.recv` (at the start of t); channels are numbered in (stage, value, consumer) order
  and each stage receives in channel order, so the programs cannot deadlock (checked by
  `rdu.verify_channels`).
- **What does not cross**: weights and inputs go to every stage that reads them, as its
  arguments (a tied embedding / LM head is an argument of the first and the last stage:
  each socket holds a copy); constants, `tensor.empty`, layout ops of arguments
  and constants, and kernels that read no argument (position ids, a causal mask) are
  cloned into each stage that uses them.
- **Bookkeeping**: each stage function has `rdu.stage = s`, `rdu.args` (the indices of the
  original arguments it takes, in order; an argument nothing reads goes to the last stage,
  so every one has a place) and `rdu.results` (the original results it
  returns); the module gets `rdu.microbatches = M` (for the cost model: the compiled shape
  is one micro-batch, a pipeline step runs M of them).

It runs after `rdu-fuse` and before `rdu-tile`: the kernels are then the ones the chip will
run (fusion never straddles a stage), and every stage is tiled, sectioned, allocated and
placed on its own socket by the passes after it, as a one-socket program is. pp = 1 leaves
the module as it is.

**With tensor parallelism** (`rdu-shard{tp=T}` ran before, the module has `rdu.tp = T`):
the function is an SPMD program; the cuts fall between its kernels as above (a collective
goes with the kernel before it, so an all-reduce stays in the stage of its row-parallel
matmul and no partial sum crosses a cut), each stage program keeps its arguments'
`rdu.shard` attributes and is itself SPMD over T sockets: stage s runs on sockets
s T .. s T + T - 1, and a `rdu.send`/`rdu.recv` channel joins **rank r of stage s to rank r
of stage t** (each rank sends what it holds: its shard of a sharded value, its copy of a
replicated one). `rdu.shard`s of arguments and constants are cloned like views. The
channels are checked at stage level (every rank runs the same program, so they match
rank by rank). The fabric must have tp x pp sockets.

Raises CompileError: the module has sections already, more than one function, fewer
kernels than stages, or the fabric has fewer sockets than stages.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate

from xdsl.context import Context
from xdsl.dialects import arith, func, tensor
from xdsl.dialects.builtin import ArrayAttr, DenseArrayBase, IntegerAttr, ModuleOp, TensorType, i64
from xdsl.ir import Block, BlockArgument, Operation, Region, SSAValue
from xdsl.passes import ModulePass

from rdu_compiler.dialects import rdu
from rdu_compiler.errors import CompileError
from rdu_compiler.fabric import Fabric
from rdu_compiler.kernel.traffic import (
    compute_dtype,
    gathered_bytes,
    itemsize,
    kernel_flops,
    kernel_traffic,
)
from rdu_compiler.passes.common import fabric_for, functions
from rdu_compiler.passes.shard_layout import module_tp
from rdu_compiler.plan.stages import IMBALANCE, StagePlan, plan_stages

NAME = "rdu-pipeline"
MICROBATCHES_ATTR = "rdu.microbatches"


def pp_problem(fabric: Fabric | None, pp: int, microbatches: int, tp: int = 1) -> str:
    """Why `pp` stages and `microbatches` cannot be compiled for `fabric` ("" if they can):
    counts below 1, or more sockets than the node has (one stage per socket, or per group
    of `tp` sockets when each stage is tensor parallel: tp x pp sockets)."""
    if pp < 1 or microbatches < 1:
        return f"pp={pp}, microbatches={microbatches}: both must be >= 1"
    if fabric is not None and pp > 1 and pp * tp > fabric.node.sockets:  # tp alone: cost.node.check_sockets
        need = f"{pp} sockets" if tp == 1 else f"tp x pp = {tp} x {pp} = {tp * pp} sockets (each stage on {tp})"
        return (f"pp={pp} stages need {need}, but fabric '{fabric.name}' has {fabric.node.sockets}; use a "
                "multi-socket fabric (sn40l-node8: 8, sn40l-rack16: 16) or a smaller pp" + (" or tp" if tp > 1 else ""))
    return ""


def kernel_work_s(k: rdu.KernelOp, fabric: Fabric) -> float:
    """Roofline seconds of kernel `k` alone on one socket of `fabric`, untiled:
    max(FLOPs / peak FLOP/s of its compute dtype, (operand + gathered + result bytes) /
    HBM bytes/s)."""
    nbytes = sum(kernel_traffic(k)) + gathered_bytes(k) + sum(_bytes(r) for r in k.results)
    flops = kernel_flops(k)
    compute = flops / fabric.peak_flops(compute_dtype(k)) if flops else 0.0
    return max(compute, nbytes / fabric.hbm.bytes_per_s)


def _bytes(v: SSAValue) -> int:
    return math.prod(rdu.shape_of(v.type)) * itemsize(v.type) if isinstance(v.type, TensorType) else 0


def _free_ops(block: Block) -> set[Operation]:
    """Ops every stage clones where it needs them instead of receiving their results:
    constants, empty tensors, layout ops of arguments and of such ops (views of weights),
    and kernels that read no argument at all (position ids, a causal mask: computed from
    constants, as cheap to recompute as to send). Everything else is computed once."""
    free: set[Operation] = set()
    for op in block.ops:
        if isinstance(op, arith.ConstantOp | tensor.EmptyOp):
            free.add(op)
        elif isinstance(op, (*rdu.LAYOUT_OPS, rdu.ShardOp)) and all(
                isinstance(v, BlockArgument) or v.owner in free for v in op.operands):
            free.add(op)  # a tensor-parallel shard of one is each socket's own slice: cloned too
        elif isinstance(op, rdu.KernelOp) and all(v.owner in free for v in op.operands):
            free.add(op)
    return free


@dataclass
class _Graph:
    """The function's ops with their stage-relevant facts."""

    ops: list[Operation]  # body ops without the return
    free: set[Operation]
    kernels: list[rdu.KernelOp]
    position: dict[Operation, int]

    def crossing(self) -> list[int]:
        """Bytes crossing a cut just before kernel c (index 0 unused): results of non-free
        ops defined before kernel c and read (not only returned) at or after it."""
        cut_at = [self.position[k] for k in self.kernels]
        diff = [0] * (len(self.kernels) + 1)
        for op in self.ops:
            if op in self.free:
                continue
            d = self.position[op]
            for r in op.results:
                users = [self.position[t] for u in r.uses if (t := self.top(u.operation)) in self.position]
                lo, hi = bisect_right(cut_at, d), bisect_right(cut_at, max(users, default=d)) - 1
                if lo <= hi:
                    diff[lo] += _bytes(r)
                    diff[hi + 1] -= _bytes(r)
        out = list(accumulate(diff[:-1]))
        return [0, *out[1:]]

    def top(self, op: Operation) -> Operation:
        """The function-level op `op` is in (itself, or the kernel whose payload holds it)."""
        while op not in self.position and isinstance(op.parent_op(), Operation) and not isinstance(op.parent_op(), func.FuncOp):
            op = op.parent_op()  # type: ignore[assignment]
        return op


def _graph(fn: func.FuncOp) -> _Graph:
    ops = [op for op in fn.body.block.ops if not isinstance(op, func.ReturnOp)]
    free = _free_ops(fn.body.block)
    kernels = [op for op in ops if isinstance(op, rdu.KernelOp) and op not in free]
    return _Graph(ops, free, kernels, {op: i for i, op in enumerate(ops)})


def stage_plan(fn: func.FuncOp, fabric: Fabric, pp: int, imbalance: float = IMBALANCE) -> tuple[_Graph, StagePlan]:
    """The graph of `fn` and where `pp` stages cut it (`plan.stages`).

    Raises:
        CompileError: fewer kernels than stages.
    """
    g = _graph(fn)
    try:
        plan = plan_stages([kernel_work_s(k, fabric) for k in g.kernels], g.crossing(), pp, imbalance)
    except ValueError as e:
        raise CompileError(NAME, f"function @{fn.sym_name.data}: {e}; use a smaller pp") from e
    return g, plan


def _stage_of_ops(g: _Graph, plan: StagePlan) -> dict[Operation, int]:
    """Stage of every non-free op: a kernel's from the cuts, any other op the stage of the
    last kernel before it (a layout op of a kernel result stays with its producer)."""
    stage_of: dict[Operation, int] = {}
    starts = {g.kernels[s]: i for i, s in enumerate(plan.starts)}
    current = 0
    for op in g.ops:
        if op in starts:
            current = starts[op]  # type: ignore[index]
        if op not in g.free:
            stage_of[op] = current
    return stage_of


def split_function(fn: func.FuncOp, g: _Graph, plan: StagePlan) -> list[func.FuncOp]:
    """The stage functions of `fn` cut at `plan` (see the module docstring)."""
    stage_of = _stage_of_ops(g, plan)
    p = len(plan.starts)
    ret = fn.body.block.last_op
    assert isinstance(ret, func.ReturnOp)
    results = list(ret.operands)
    result_stage = [stage_of.get(v.owner, p - 1) if isinstance(v.owner, Operation) else p - 1 for v in results]
    # channels: (value, consumer stage) in (producer stage, program order, consumer) order
    channels: dict[tuple[SSAValue, int], int] = {}
    for op in g.ops:
        if op not in stage_of:
            continue
        for r in op.results:
            users = sorted({stage_of[u.operation] for u in r.uses if u.operation in stage_of} - {stage_of[op]})
            for t in users:
                channels[(r, t)] = len(channels)
    by_producer = sorted(channels.items(), key=lambda kv: kv[1])
    stages = []
    args = fn.body.block.args
    arg_stages = [_value_stages(a, stage_of, g, dict(enumerate(result_stage))) for a in args]
    for s in range(p):
        used_args = [a.index for a in args if s in (arg_stages[a.index] or {p - 1})]  # an unused one: the last stage
        block = Block(arg_types=[args[i].type for i in used_args])
        vm: dict[SSAValue, SSAValue] = {args[i]: block.args[i_new] for i_new, i in enumerate(used_args)}
        for i_new, i in enumerate(used_args):
            block.args[i_new].name_hint = args[i].name_hint
        for (v, t), c in by_producer:
            if t == s:
                recv = rdu.RecvOp(v.type, stage_of[v.owner], c)  # type: ignore[index]
                block.add_op(recv)
                vm[v] = recv.result
        for op in g.ops:
            if stage_of.get(op) == s:
                _clone_into(op, block, vm, g.free)
        for (v, t), c in by_producer:
            if stage_of.get(v.owner) == s:  # type: ignore[arg-type]
                block.add_op(rdu.SendOp(vm[v], t, c))
        mine = [i for i, st in enumerate(result_stage) if st == s]
        for i in mine:
            _clone_free(results[i], block, vm, g.free)
        block.add_op(func.ReturnOp(*[vm[results[i]] for i in mine]))
        stage = func.FuncOp(f"{fn.sym_name.data}_stage{s}", ([a.type for a in block.args], [results[i].type for i in mine]),
                            Region(block))
        if fn.arg_attrs is not None:  # rdu.shard / rdu.input of a tensor-parallel program
            stage.arg_attrs = ArrayAttr([fn.arg_attrs.data[i] for i in used_args])
        stage.attributes[rdu.STAGE_ATTR] = IntegerAttr(s, i64)
        stage.attributes["rdu.args"] = DenseArrayBase.from_list(i64, used_args)
        stage.attributes["rdu.results"] = DenseArrayBase.from_list(i64, mine)
        stages.append(stage)
    return stages


def _value_stages(v: SSAValue, stage_of: dict[Operation, int], g: _Graph, result_stage: dict[int, int]) -> set[int]:
    """The stages that read `v`: its users' stages, through free ops (a view of a weight is
    cloned where it is read), and the stage returning it."""
    out: set[int] = set()
    for u in v.uses:
        user = g.top(u.operation)
        if user in stage_of:
            out.add(stage_of[user])
        elif user in g.free:
            for r in user.results:
                out |= _value_stages(r, stage_of, g, result_stage)
        elif isinstance(user, func.ReturnOp):
            out.add(result_stage[u.index])
    return out


def _clone_free(v: SSAValue, block: Block, vm: dict[SSAValue, SSAValue], free: set[Operation]) -> None:
    """Make `v` available in `block`: clone its free defining op (and theirs) if needed."""
    if v in vm:
        return
    op = v.owner
    if not isinstance(op, Operation) or op not in free:
        raise CompileError(NAME, f"value {v.name_hint or v} is used in a stage that neither computes nor receives it")
    for o in op.operands:
        _clone_free(o, block, vm, free)
    clone = op.clone(value_mapper=vm)  # type: ignore[arg-type]
    block.add_op(clone)
    for old, new in zip(op.results, clone.results, strict=True):
        vm[old] = new


def _clone_into(op: Operation, block: Block, vm: dict[SSAValue, SSAValue], free: set[Operation]) -> None:
    for o in op.operands:
        _clone_free(o, block, vm, free)
    for inner in op.walk():  # a payload op may read a value defined outside its kernel
        for o in inner.operands:
            if isinstance(o.owner, Operation) and o.owner in free:
                _clone_free(o, block, vm, free)
    clone = op.clone(value_mapper=vm)  # type: ignore[arg-type]
    block.add_op(clone)
    for old, new in zip(op.results, clone.results, strict=True):
        vm[old] = new


@dataclass(frozen=True)
class RduPipelinePass(ModulePass):
    """Cut the program into `pp` pipeline stages (module docstring); `microbatches` is
    recorded for the cost model; `imbalance` is the tolerance of `plan.stages`."""

    name = NAME

    pp: int = 1
    microbatches: int = 1
    imbalance: float = IMBALANCE
    fabric: str = ""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.imbalance < 0:
            raise CompileError(NAME, f"imbalance={self.imbalance}; it must be >= 0")
        problem = pp_problem(None, self.pp, self.microbatches)
        if problem:
            raise CompileError(NAME, problem)
        if self.pp == 1:
            return
        fns = list(functions(op))
        if len(fns) != 1 or any(rdu.STAGE_ATTR in f.attributes for f in fns):
            raise CompileError(NAME, f"the module has {len(fns)} functions ({', '.join('@' + f.sym_name.data for f in fns)}); "
                               "rdu-pipeline cuts one unstaged function; run it once, on the program as rdu-fuse leaves it")
        fn = fns[0]
        if any(isinstance(o, rdu.SectionOp) for o in fn.body.block.ops):
            raise CompileError(NAME, f"@{fn.sym_name.data} is already cut into rdu.sections; run rdu-pipeline before "
                               "rdu-tile and rdu-section (each stage is then sectioned on its own socket)")
        fabric = fabric_for(NAME, self.fabric, op)
        problem = pp_problem(fabric, self.pp, self.microbatches, module_tp(op))
        if problem:
            raise CompileError(NAME, problem)
        g, plan = stage_plan(fn, fabric, self.pp, self.imbalance)
        stages = split_function(fn, g, plan)
        block = op.body.block
        for st in stages:
            block.insert_op_before(st, fn)
        fn.detach()
        fn.erase()
        op.attributes[MICROBATCHES_ATTR] = IntegerAttr(self.microbatches, i64)
        try:
            rdu.verify_channels(op)  # by construction they match and cannot deadlock; a bug here is refused
        except rdu.ChannelError as e:
            raise CompileError(NAME, f"internal error, the stage programs it built are wrong: {e}") from e
