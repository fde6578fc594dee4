"""The `rdu` dialect: sections, kernels, streams and buffers of a reconfigurable dataflow unit.

A program for the RDU is a sequence of `rdu.section` ops. A section is configured onto
the fabric at once and runs to completion (SambaFlow's "section", SN40L §III); it reads
and writes off-chip tensors only through `rdu.load` / `rdu.store` (AGCU transfers), and
its kernels are connected by `!rdu.stream` values.

```mlir
%out = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64}> ({
  %a = rdu.load %x from <hbm> : tensor<16x64xf32> -> !rdu.stream<16x64xf32>
  %r = "rdu.kernel"(%a, %init) <{kind = #rdu.pattern<map>, ...}> ({
  ^bb0(%in: f32, %o: f32):
    %m = arith.maximumf %in, %c0 : f32
    rdu.yield %m : f32
  }) : (!rdu.stream<16x64xf32>, tensor<16x64xf32>) -> !rdu.stream<16x64xf32>
  %s = rdu.store %r to <hbm> : !rdu.stream<16x64xf32> -> tensor<16x64xf32>
  rdu.yield %s : tensor<16x64xf32>
}) : () -> tensor<16x64xf32>
```

Modules: `attrs` (enums, `#rdu.buffer`, `!rdu.stream`, shape helpers), `ops` (section,
kernel, index, yield), `layout` (load, store, view, concat, pad), `collectives` (all_reduce,
all_gather, shard: the tensor-parallel ops), `fabric_checks` (a
section against the fabric its module names), `p2p` (send, recv between pipeline stages).
"""

from xdsl.ir import Dialect

from rdu_compiler.dialects.rdu.attrs import (
    BufferAttr,
    Pattern,
    PatternAttr,
    Routing,
    RoutingAttr,
    StreamType,
    Tier,
    TierAttr,
    ViewMode,
    ViewModeAttr,
    as_stream,
    as_tensor,
    element_type_of,
    shape_of,
)
from rdu_compiler.dialects.rdu.collectives import TP_OPS, AllGatherOp, AllReduceOp, ShardOp
from rdu_compiler.dialects.rdu.fabric_checks import (
    FABRIC_ATTR,
    module_fabric,
    site_pairs,
    verify_against_fabric,
)
from rdu_compiler.dialects.rdu.layout import LAYOUT_OPS, ConcatOp, LoadOp, PadOp, StoreOp, ViewOp
from rdu_compiler.dialects.rdu.ops import IndexOp, KernelOp, SectionOp, YieldOp
from rdu_compiler.dialects.rdu.p2p import (
    STAGE_ATTR,
    ChannelError,
    RecvOp,
    SendOp,
    stage_programs,
    verify_channels,
)

RDU = Dialect(
    "rdu",
    [KernelOp, IndexOp, SectionOp, YieldOp, LoadOp, StoreOp, ViewOp, ConcatOp, PadOp, AllReduceOp, AllGatherOp, ShardOp,
     SendOp, RecvOp],
    [TierAttr, PatternAttr, RoutingAttr, ViewModeAttr, BufferAttr, StreamType],
)

__all__ = [
    "FABRIC_ATTR",
    "LAYOUT_OPS",
    "RDU",
    "TP_OPS",
    "AllGatherOp",
    "AllReduceOp",
    "STAGE_ATTR",
    "TP_OPS",
    "AllGatherOp",
    "AllReduceOp",
    "ChannelError",
    "RecvOp",
    "SendOp",
    "stage_programs",
    "verify_channels",
    "BufferAttr",
    "ConcatOp",
    "IndexOp",
    "KernelOp",
    "LoadOp",
    "PadOp",
    "Pattern",
    "PatternAttr",
    "Routing",
    "RoutingAttr",
    "SectionOp",
    "ShardOp",
    "StoreOp",
    "StreamType",
    "Tier",
    "TierAttr",
    "ViewMode",
    "ViewModeAttr",
    "YieldOp",
    "as_stream",
    "as_tensor",
    "element_type_of",
    "module_fabric",
    "shape_of",
    "site_pairs",
    "verify_against_fabric",
]
