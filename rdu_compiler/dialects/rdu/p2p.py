"""Point-to-point transfers between pipeline stages: `rdu.send` and `rdu.recv`.

A pipeline-parallel program (`rdu-pipeline`) is one `func.func` per stage, each marked
`attributes {rdu.stage = i : i64}` and run on its own socket. An activation produced in
stage i and read in stage j > i leaves stage i through `rdu.send` and enters stage j through
the `rdu.recv` of the same channel:

```mlir
func.func @forward_stage0(%x: tensor<4x8xf32>) attributes {rdu.stage = 0 : i64} {
  rdu.send %x to 1 channel 0 : tensor<4x8xf32>
  func.return
}
func.func @forward_stage1() -> tensor<4x8xf32> attributes {rdu.stage = 1 : i64} {
  %y = rdu.recv from 0 channel 0 : tensor<4x8xf32>
  func.return %y : tensor<4x8xf32>
}
```

On SN40L such a transfer streams AGCU to AGCU over the inter-RDU link without staging
through HBM (SN40L §III); its time is `cost.collectives.send_recv`.

Semantics (what `verify_channels` checks): a send completes when the matching recv takes
it (a rendezvous, the strictest assumption: a program that cannot deadlock so cannot
deadlock with buffered sends either). Every channel has exactly one send and one recv;
the send names the recv's stage as its peer and the recv the send's; both carry the same
tensor type (shape and element type). Each stage program runs its ops in order; a program
set whose sends and receives cannot all complete in some interleaving is refused before
running, naming the channels the stages wait on.

With tensor parallelism (`rdu.tp = T` on the module) each stage program is SPMD over T
sockets (stage s on sockets s T .. s T + T - 1) and a channel joins rank r of stage s to
rank r of its peer: the same checks hold rank by rank, plus stages x T <= the fabric's
sockets.
"""

from __future__ import annotations

from xdsl.dialects import func
from xdsl.dialects.builtin import I64, IntegerAttr, ModuleOp, TensorType, i64
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    irdl_op_definition,
    operand_def,
    prop_def,
    result_def,
    traits_def,
)
from xdsl.traits import HasParent
from xdsl.utils.exceptions import VerifyException

from rdu_compiler.dialects.rdu.fabric_checks import module_fabric
from rdu_compiler.errors import RduError

#: The function attribute naming a stage program's stage (= its socket in a PP-only node).
STAGE_ATTR = "rdu.stage"


class ChannelError(RduError, VerifyException):
    """The stage programs' sends and receives do not match, or cannot all complete
    (a deadlock). The message names the channel and the stages."""


def stage_of(op: Operation) -> int | None:
    """The `rdu.stage` of the function `op` is in, or None outside a stage program."""
    fn = op.parent_op()
    while fn is not None and not isinstance(fn, func.FuncOp):
        fn = fn.parent_op()
    attr = fn.attributes.get(STAGE_ATTR) if fn is not None else None
    return attr.value.data if isinstance(attr, IntegerAttr) else None


class _P2P(IRDLOperation):
    """What send and recv share: the peer stage, the channel, the stage-program check."""

    peer = prop_def(IntegerAttr[I64])
    channel = prop_def(IntegerAttr[I64])

    @property
    def what(self) -> str:
        return "rdu.send" if isinstance(self, SendOp) else "rdu.recv"

    def tensor_type(self) -> Attribute:
        raise NotImplementedError

    def verify_(self) -> None:
        peer, channel = self.peer.value.data, self.channel.value.data
        stage = stage_of(self)
        where = f"{self.what} of channel {channel}"
        if stage is None:
            raise VerifyException(
                f"{where} is in a function without `{STAGE_ATTR}`; a transfer belongs to a stage program "
                f"(mark the function `attributes {{{STAGE_ATTR} = N : i64}}`, as rdu-pipeline does)"
            )
        if channel < 0 or peer < 0:
            raise VerifyException(f"{where}: channel {channel} and peer stage {peer} must be >= 0")
        if peer == stage:
            raise VerifyException(f"{where} in stage {stage} names its own stage as peer; a transfer goes to another stage")
        t = self.tensor_type()
        if not isinstance(t, TensorType) or any(d < 0 for d in t.get_shape()):
            raise VerifyException(f"{where} carries {t}; transfers carry statically shaped tensors")
        module = self.get_toplevel_object()
        if isinstance(module, ModuleOp) and _first_transfer(module) is self:
            verify_channels(module)  # the module-wide check, once per verification


@irdl_op_definition
class SendOp(_P2P):
    """Send tensor `value` to stage `peer` on `channel` (AGCU to AGCU, no HBM staging).

    ```mlir
    rdu.send %h to 1 channel 0 : tensor<1x16x64xf32>
    ```
    """

    name = "rdu.send"
    value = operand_def(TensorType)
    traits = traits_def(HasParent(func.FuncOp))
    assembly_format = "$value `to` $peer `channel` $channel attr-dict `:` type($value)"

    def __init__(self, value: SSAValue, peer: int, channel: int):
        super().__init__(operands=[value], properties={"peer": IntegerAttr(peer, i64), "channel": IntegerAttr(channel, i64)})

    def tensor_type(self) -> Attribute:
        return self.value.type


@irdl_op_definition
class RecvOp(_P2P):
    """Receive a tensor from stage `peer` on `channel`.

    ```mlir
    %h = rdu.recv from 0 channel 0 : tensor<1x16x64xf32>
    ```
    """

    name = "rdu.recv"
    result = result_def(TensorType)
    traits = traits_def(HasParent(func.FuncOp))
    assembly_format = "`from` $peer `channel` $channel attr-dict `:` type($result)"

    def __init__(self, result_type: Attribute, peer: int, channel: int):
        super().__init__(result_types=[result_type], properties={"peer": IntegerAttr(peer, i64), "channel": IntegerAttr(channel, i64)})

    def tensor_type(self) -> Attribute:
        return self.result.type


P2P_OPS = (SendOp, RecvOp)


def _first_transfer(module: ModuleOp) -> Operation | None:
    for fn in module.ops:
        if isinstance(fn, func.FuncOp) and not fn.is_declaration:
            for op in fn.body.block.ops:
                if isinstance(op, P2P_OPS):
                    return op
    return None


def stage_programs(module: ModuleOp) -> list[tuple[int, func.FuncOp]]:
    """The module's stage programs as (stage, function), by stage.

    Raises:
        ChannelError: two functions claim one stage.
    """
    out: dict[int, func.FuncOp] = {}
    for fn in module.ops:
        if isinstance(fn, func.FuncOp) and isinstance(attr := fn.attributes.get(STAGE_ATTR), IntegerAttr):
            stage = attr.value.data
            if stage in out:
                raise ChannelError(
                    f"functions @{out[stage].sym_name.data} and @{fn.sym_name.data} are both {STAGE_ATTR} = {stage}; "
                    "give each stage program its own stage"
                )
            out[stage] = fn
    return sorted(out.items())


def verify_channels(module: ModuleOp) -> None:
    """Check that the stage programs' transfers match and cannot deadlock.

    Matching: each channel has exactly one `rdu.send` and one `rdu.recv`; the send's peer is
    the recv's stage, the recv's peer the send's stage; both carry the same tensor type.
    Deadlock: the programs are run symbolically, each in op order, a send and its recv
    completing together (rendezvous); if some program is left waiting, the waits are named.

    Raises:
        ChannelError: the first mismatch, or the deadlock (one paragraph naming the channels).
    """
    programs = stage_programs(module)
    sends: dict[int, list[tuple[int, SendOp]]] = {}
    recvs: dict[int, list[tuple[int, RecvOp]]] = {}
    events: dict[int, list[SendOp | RecvOp]] = {}
    for stage, fn in programs:
        events[stage] = [op for op in fn.body.block.ops if isinstance(op, P2P_OPS)]
        for op in events[stage]:
            table = sends if isinstance(op, SendOp) else recvs
            table.setdefault(op.channel.value.data, []).append((stage, op))  # type: ignore[arg-type]
    for channel in sorted(set(sends) | set(recvs)):
        _match(channel, sends.get(channel, []), recvs.get(channel, []), {s for s, _ in programs})
    _check_progress(events)
    _check_sockets(module, len(programs))


def _check_sockets(module: ModuleOp, stages: int) -> None:
    """A tensor-parallel pipeline (`rdu.tp = T` on the module) runs stage s on sockets
    s T .. s T + T - 1: the module's fabric must have stages x T sockets. Every rank of a
    stage runs the same program, so channels matched at stage level match rank by rank
    (rank r of stage s to rank r of stage t), and a collective inside a stage involves only
    that stage's T sockets (its group divides T: `collectives._check_group`)."""
    attr = module.attributes.get("rdu.tp")
    tp = attr.value.data if isinstance(attr, IntegerAttr) else 1
    fabric = module_fabric(module)
    if fabric is not None and stages * tp > fabric.node.sockets:
        raise ChannelError(
            f"{stages} stage programs of tp = {tp} sockets each need {stages * tp} sockets, but fabric "
            f"'{fabric.name}' has {fabric.node.sockets} ([sockets].count); compile with tp x pp <= "
            f"{fabric.node.sockets} or for a fabric with more sockets (sn40l-rack16)"
        )


def _describe(stage: int, op: SendOp | RecvOp) -> str:
    direction = "to" if isinstance(op, SendOp) else "from"
    return f"stage {stage} {op.what} {direction} stage {op.peer.value.data} ({op.tensor_type()})"


def _match(channel: int, sends: list[tuple[int, SendOp]], recvs: list[tuple[int, RecvOp]], stages: set[int]) -> None:
    fix = "each channel needs exactly one rdu.send and one rdu.recv naming each other's stage with the same tensor type"
    if len(sends) != 1 or len(recvs) != 1:
        found = "; ".join(_describe(s, op) for s, op in [*sends, *recvs])
        raise ChannelError(
            f"channel {channel} has {len(sends)} rdu.send and {len(recvs)} rdu.recv ({found}), so a transfer "
            f"would never complete; {fix} (re-run rdu-pipeline on the unstaged program)"
        )
    (s_stage, send), (r_stage, recv) = sends[0], recvs[0]
    problems = []
    if send.peer.value.data != r_stage:
        problems.append(f"the send goes to stage {send.peer.value.data} but the recv is in stage {r_stage}")
    if recv.peer.value.data != s_stage:
        problems.append(f"the recv expects stage {recv.peer.value.data} but the send is in stage {s_stage}")
    if send.peer.value.data not in stages:
        problems.append(f"there is no stage program {send.peer.value.data}")
    if send.tensor_type() != recv.tensor_type():
        problems.append(f"the send carries {send.tensor_type()} but the recv expects {recv.tensor_type()}")
    if problems:
        raise ChannelError(
            f"channel {channel} does not match: {'; '.join(problems)} ({_describe(s_stage, send)}; "
            f"{_describe(r_stage, recv)}); {fix}"
        )


def _check_progress(events: dict[int, list[SendOp | RecvOp]]) -> None:
    """Run the stage programs' transfers symbolically (rendezvous); refuse a deadlock."""
    head = dict.fromkeys(events, 0)
    progress = True
    while progress:
        progress = False
        for stage, ops in events.items():
            if head[stage] >= len(ops) or not isinstance(ops[head[stage]], SendOp):
                continue
            send = ops[head[stage]]
            peer = send.peer.value.data
            other = events.get(peer, [])
            if head.get(peer, 0) < len(other) and other[head[peer]].channel == send.channel:
                head[stage] += 1
                head[peer] += 1
                progress = True
    waiting = [(s, events[s][head[s]]) for s in events if head[s] < len(events[s])]
    if waiting:
        waits = "; ".join(f"{_describe(s, op)} waits on channel {op.channel.value.data}" for s, op in waiting)
        raise ChannelError(
            f"the stage programs deadlock: {waits}. A send completes only when its recv is reached, so each "
            "stage must reach its transfers in an order the other stages can meet; order every stage's sends "
            "and receives by channel (as rdu-pipeline emits them)"
        )
