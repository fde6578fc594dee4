"""The byte-counting rules of one kernel, stated once.

Used by rdu-tile and rdu-allocate (buffer sizes per tile), by the cost model (traffic per
operand, FLOPs, tier of each off-chip read) and checked by the emulator's counters
(`testsuite/unit/test_traffic.py`):

- an operand is *counted* (`counted_operands`) when it is read from a tensor: not a scalar
  (rank 0, in PCU registers), not `tensor.empty`, not an input the kernel already reads
  with the same access (one stream: torch-mlir's fused GELU reads `x` three times, a
  LayerNorm's `x * x` twice), and, for an init of a map (no reduction loop), only when the
  payload reads its block argument;
- a counted operand moves `traffic_elements(access, domain, tile) * itemsize` bytes over the
  tiled loop nest (re-read once per tile of every loop it does not depend on);
- off-chip reads are charged to the tier of the `rdu.load` they come from, through views
  and pads (`follow_tiers`); a concat reads its loaded parts once into its buffer;
- a gather (`tensor.extract`) reads one element per domain point from its capture's tier,
  charged there at the tier's access granularity (`gathered_bytes(k, burst)`: each run of
  contiguous elements in a tile rounded up to whole bursts);
- a hash probe reads, per ID, both candidate buckets of its index (a capture) from the
  index's tier, 64 B each, at the tier's burst (`gathered_bytes`); an index `rdu-tile` made
  PMU-resident (input 1) is read once, whole, like a scatter's destination, and the probes
  then read its PMUs (`probe_pmu_bytes`); one kept resident across calls
  (`resident_across_calls`) is not read per call at all;
- a scatter's destination (its init) is its accumulator, resident in its PMUs for the whole
  kernel: its buffer holds the whole destination, which is read once (unless it is
  `tensor.empty`) and written once; its index and update inputs follow the rule above.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from xdsl.dialects import arith, tensor
from xdsl.dialects.builtin import AnyFloat
from xdsl.ir import BlockArgument, Operation, SSAValue

from rdu_compiler.dialects import rdu
from rdu_compiler.dialects.rdu import KernelOp, Pattern, element_type_of
from rdu_compiler.dtypes import numpy_dtype
from rdu_compiler.embedding.probe import BUCKET_BYTES, BUCKETS_PER_LOOKUP, PROBE_INT_OPS
from rdu_compiler.kernel.access import Access, tile_elements, traffic_elements
from rdu_compiler.kernel.payload import contraction_mul, flops_per_point

#: Tiles kept per buffer: 2 = double-buffered, so the AGCU/producer fills one tile while
#: the consumer reads the other (SN40L §III-A, PMU stage buffers).
DEPTH = 2


def itemsize(value_type: object) -> int:
    return numpy_dtype(element_type_of(value_type)).itemsize  # type: ignore[arg-type]


def operand_tile_bytes(kernel: KernelOp, tile: Sequence[int]) -> list[int]:
    """Bytes of one tile of each input/init operand (0 for scalars, which live in registers).

    An init always has an output buffer (the result tile is staged there), even when it
    is `tensor.empty` and never read.
    """
    out = []
    operands = [*kernel.inputs, *kernel.inits]
    scatter = kernel.kind.data == Pattern.SCATTER
    for i, (value, amap) in enumerate(zip(operands, kernel.indexing_maps.data, strict=True)):
        access = Access.from_map(amap.data)
        if not access.forms:
            out.append(0)
        elif (scatter and i >= len(kernel.inputs)) or is_resident_index(kernel, i):  # resident, whole
            out.append(math.prod(rdu.shape_of(value.type)) * itemsize(value.type))
        else:
            out.append(tile_elements(access, tile) * itemsize(value.type))
    return out


def is_resident_index(k: KernelOp, i: int) -> bool:
    """Operand i is a hash probe's index held whole in its PMUs (input 1 of a hash_probe
    kernel without captures: `rdu-tile` moved it there)."""
    return k.kind.data == Pattern.HASH_PROBE and i == 1 and len(k.inputs) == 2


#: On a hash_probe kernel with a PMU-resident index (and on the module): the index stays in
#: the kernel's PMUs from one call of the program to the next (`rdu-tile{resident_index=true}`),
#: so the cost model charges its load to the first call only (`cost.residency`).
RESIDENT_INDEX_ATTR = "rdu.index_resident_across_calls"


def resident_across_calls(k: KernelOp) -> bool:
    """The kernel's index is PMU-resident (`is_resident_index`) and stays there across calls."""
    return is_resident_index(k, 1) and RESIDENT_INDEX_ATTR in k.attributes


def probe_pmu_bytes(k: KernelOp) -> int:
    """Bytes a hash probe reads from its PMU-resident index: per ID both candidate buckets
    (BUCKETS_PER_LOOKUP x BUCKET_BYTES); 0 for any other kernel."""
    if k.kind.data != Pattern.HASH_PROBE or len(k.inputs) != 2:
        return 0
    return math.prod(k.domain_sizes) * BUCKETS_PER_LOOKUP * BUCKET_BYTES


def pmus_for(tile_bytes: int, pmu_capacity: int) -> int:
    """PMUs a buffer of `tile_bytes` tiles needs at DEPTH-fold buffering (0 for no buffer)."""
    return math.ceil(DEPTH * tile_bytes / pmu_capacity) if tile_bytes else 0


def operand_pmus(kernel: KernelOp, tile: Sequence[int], pmu_capacity: int) -> list[int]:
    """PMUs each input/init operand's buffer needs at `tile` (`pmus_for` of its tile bytes).

    Every kernel gets at least one PMU, as the cost model and the placer count it: when
    all its operands are scalars (rank 0, in registers; e.g. a max over a 0-d sum once
    rdu-fold-views folded the reshapes away) its first result's buffer gets one.
    """
    need = [pmus_for(b, pmu_capacity) for b in operand_tile_bytes(kernel, tile)]
    if need and not any(need):
        need[len(kernel.inputs) if len(kernel.inits) else 0] = 1
    return need


def untileable_dims(kernel: KernelOp) -> set[int]:
    """Loops that must stay whole: the scan dimension of a scan."""
    if kernel.kind.data == Pattern.SCAN and kernel.scan_dim is not None:
        return {kernel.scan_dim.value.data}
    return set()


def is_empty_init(kernel: KernelOp, i: int) -> bool:
    return isinstance(kernel.inits[i].owner, tensor.EmptyOp)


def counted_operands(k: rdu.KernelOp) -> list[bool]:
    """Per input/init operand, whether the kernel reads it from its tensor: not a scalar
    (no access forms: PCU registers), not `tensor.empty`, not an input that an earlier
    input reads with the same indexing map (the same stream, read once), and an init only
    when there is a reduction loop or the payload reads its block argument. The cost model
    counts these operands' traffic; the emulator counts the same ones (`KernelExecutor`)."""
    red = bool(k.reduction_dims) or k.kind.data == Pattern.SCATTER  # a scatter keeps what it does not write
    block = k.body.block
    out = []
    ins = list(k.inputs)
    maps = k.indexing_maps.data
    for i, (v, amap) in enumerate(zip([*k.inputs, *k.inits], maps, strict=True)):
        unread = i >= len(k.inputs) and not red and not block.args[i].uses
        again = i < len(ins) and any(ins[j] is v and maps[j] == amap for j in range(i))
        out.append(bool(amap.data.results) and not isinstance(v.owner, tensor.EmptyOp) and not unread and not again)
    return out


def kernel_traffic(k: rdu.KernelOp) -> list[int]:
    """Bytes each input/init operand moves per call over the whole tiled loop nest (0: not
    counted). A scan reads its input once, whole; a scatter its destination once, whole; a
    PMU-resident probe index once, whole, unless it stays resident across calls
    (`resident_across_calls`: 0, its load is the first call's, `cost.residency`)."""
    if k.kind.data == rdu.Pattern.SCAN:
        return [math.prod(rdu.shape_of(k.inputs[0].type)) * itemsize(k.inputs[0].type)] + [0] * len(k.inits)
    out = []
    operands = [*k.inputs, *k.inits]
    for i, (v, amap, counted) in enumerate(zip(operands, k.indexing_maps.data, counted_operands(k), strict=True)):
        if not counted:
            out.append(0)
            continue
        if i == 1 and resident_across_calls(k):  # loaded before the first call, not per call
            out.append(0)
            continue
        if (k.kind.data == rdu.Pattern.SCATTER and i >= len(k.inputs)) or is_resident_index(k, i):
            out.append(math.prod(rdu.shape_of(v.type)) * itemsize(v.type))
            continue
        out.append(traffic_elements(Access.from_map(amap.data), k.domain_sizes, k.tile_sizes) * itemsize(v.type))
    return out


def kernel_flops(kernel: rdu.KernelOp) -> int:
    """FLOPs of a whole kernel: arithmetic payload ops x iteration-domain points."""
    return flops_per_point(kernel.body.block) * math.prod(kernel.domain_sizes)


def kernel_int_ops(kernel: rdu.KernelOp) -> int:
    """Integer operations a kernel's pattern does on its PCUs beyond its payload: for a
    `hash_probe`, PROBE_INT_OPS (two SplitMix64 hashes, masks, 2 x 4 slot compares and
    selects; `embedding.probe`) per ID; 0 for any other kernel (payload integer ops are
    not counted, as before)."""
    if kernel.kind.data != Pattern.HASH_PROBE:
        return 0
    return PROBE_INT_OPS * math.prod(kernel.domain_sizes)


def follow_tiers(op: Operation, tiers: dict[SSAValue, str]) -> list[tuple[str, SSAValue]]:
    """Apply one section op to `tiers` (value -> the memory tier it is read from) and
    return the off-chip reads the op makes itself, as (tier, value).

    An `rdu.load` result is read from its tier; a view or pad of such a value reads off
    chip through its access pattern (same tier); a concat reads its loaded parts once into
    its buffer (returned) and is on chip. Kernels' operand reads are `kernel_traffic`.
    """
    if isinstance(op, rdu.LoadOp):
        tiers[op.result] = str(op.tier.data.value)
    elif isinstance(op, rdu.ConcatOp):
        return [(tiers[v], v) for v in op.sources if v in tiers]
    elif isinstance(op, rdu.ViewOp | rdu.PadOp) and op.operands[0] in tiers:
        tiers[op.results[0]] = tiers[op.operands[0]]
    return []


def gather_tier(k: rdu.KernelOp) -> str:
    """The memory tier a kernel's gathers read from ("hbm" / "ddr"): its first capture's
    (`rdu-allocate` sets `capture_tiers`); HBM when unset. All of `gathered_bytes` is
    charged there."""
    if k.capture_tiers and k.capture_tiers.data:
        return str(k.capture_tiers.data[0].data.value)
    return "hbm"


def gather_run_dim(op: tensor.ExtractOp) -> int | None:
    """The loop whose counter is a gather's innermost table index (through index casts), or
    None. Consecutive points of that loop read consecutive elements: the gather reads one
    contiguous run per row of the tile along it. Otherwise every element is its own access."""
    if not op.indices:
        return None
    v = op.indices[-1]
    while isinstance(v.owner, arith.IndexCastOp):
        v = v.owner.operands[0]
    return v.owner.dim.value.data if isinstance(v.owner, rdu.IndexOp) else None


def burst_round(nbytes: int, burst: int) -> int:
    """`nbytes` rounded up to a whole number of `burst`-byte accesses."""
    return -(-nbytes // burst) * burst


def gathered_bytes(k: rdu.KernelOp, burst: int = 1) -> int:
    """Bytes a kernel's gathers (`tensor.extract` in the payload) read from their tier.

    `burst = 1`: the elements requested, one per iteration-domain point each. With the
    tier's access granularity `burst` (`TierSpec.burst_bytes`): each tile reads, per point
    of its other loops, one run of `tile[d]` contiguous elements along the gather's
    innermost loop d (`gather_run_dim`), rounded up to whole bursts; a gather whose
    innermost index is computed from data reads a burst per element. Over the tiled loop
    nest: `points / domain[d] * sum over d's tiles of burst_round(size * itemsize)`.
    A `hash_probe` kernel reads, per ID, BUCKETS_PER_LOOKUP buckets of BUCKET_BYTES (64 B:
    4 slots of ID and row) from its index, each rounded up to the burst.
    """
    points = math.prod(k.domain_sizes)
    if k.kind.data == Pattern.HASH_PROBE:  # every ID reads both candidate buckets of the index
        return points * BUCKETS_PER_LOOKUP * burst_round(BUCKET_BYTES, burst) if k.captures else 0
    total = 0
    for o in k.body.block.walk():
        if not isinstance(o, tensor.ExtractOp):
            continue
        size = itemsize(o.result.type)
        d = gather_run_dim(o)
        if d is None:
            total += points * burst_round(size, burst)
            continue
        dom, tile = k.domain_sizes[d], min(k.tile_sizes[d], k.domain_sizes[d])
        full, rest = divmod(dom, tile)
        runs = full * burst_round(tile * size, burst) + (burst_round(rest * size, burst) if rest else 0)
        total += points // dom * runs
    return total


def row_gather(k: rdu.KernelOp) -> tensor.ExtractOp | None:
    """The kernel's row gather, if it is one that `rdu-tier-rows` may split by row range:
    a gather kernel with one capture, a 2-d table, read by exactly one `tensor.extract`
    whose row index comes from data (not a loop counter) and whose column index is a loop
    (`gather_run_dim`), that loop not feeding the row index's input (each row access reads
    one contiguous run of the row). None otherwise."""
    if k.kind.data != Pattern.GATHER or len(k.captures) != 1 or len(rdu.shape_of(k.captures[0].type)) != 2:
        return None
    table = k.body.block.args[len(k.inputs) + len(k.inits)]
    extracts = [o for o in k.body.block.walk() if isinstance(o, tensor.ExtractOp)]
    if len(extracts) != 1 or extracts[0].tensor != table or len(extracts[0].indices) != 2:
        return None
    op = extracts[0]
    run = gather_run_dim(op)
    row = op.indices[0]
    while isinstance(row.owner, arith.IndexCastOp):
        row = row.owner.operands[0]
    if run is None or not isinstance(row, BlockArgument) or row.owner is not k.body.block or row.index >= len(k.inputs):
        return None  # the row index must be an input's scalar
    amap = k.indexing_maps.data[row.index].data
    if any(e.used_dims() & {run} for e in amap.results):
        return None
    return op


def gathered_bytes_by_tier(k: rdu.KernelOp, bursts: dict[str, int] | None = None) -> dict[str, float]:
    """Bytes a kernel's gathers read, per tier ("hbm", "ddr"): at each tier's burst
    (`bursts`: tier -> bytes; None: the bytes requested). An untiered kernel reads all of
    `gathered_bytes` from `gather_tier`; a row gather `rdu-tier-rows` split (`hot_rows`,
    `hot_fraction` f) reads f of its row accesses from HBM at HBM's burst and 1 - f from DDR
    at DDR's (the emulator counts the actual rows instead)."""
    if k.hot_fraction is None:
        tier = gather_tier(k)
        return {tier: float(gathered_bytes(k, bursts[tier] if bursts else 1))}
    f = k.hot_fraction.value.data
    return {"hbm": f * gathered_bytes(k, bursts["hbm"] if bursts else 1),
            "ddr": (1 - f) * gathered_bytes(k, bursts["ddr"] if bursts else 1)}


def row_accesses(k: rdu.KernelOp) -> int:
    """Row reads of a row gather (`row_gather`): its domain points over the row's length."""
    op = row_gather(k)
    assert op is not None
    d = gather_run_dim(op)
    assert d is not None
    return math.prod(k.domain_sizes) // k.domain_sizes[d]


def compute_dtype(k: rdu.KernelOp) -> str:
    """The type the PCU computes in: a contraction's operand type (SN40L: BF16 multiply,
    FP32 accumulate, so a bf16 matmul with an f32 accumulator runs at the bf16 rate);
    otherwise the result type. The operand type is the narrowest float on the casts
    between the input and the multiply (an f32 input rounded to bf16 in the payload, as
    a folded `truncf` leaves it, multiplies at the bf16 rate)."""
    if k.kind.data == rdu.Pattern.MATMUL and k.inputs:
        mul = contraction_mul(k.body.block, len(k.inputs))
        if mul is not None:
            widths = []
            for v in mul.operands:
                types = [v.type]
                while isinstance(v.owner, arith.ExtFOp | arith.TruncFOp):
                    v = v.owner.operands[0]
                    types.append(v.type)
                widths.append(min(types, key=lambda t: t.bitwidth if isinstance(t, AnyFloat) else 1 << 30))
            narrowest = min(widths, key=lambda t: t.bitwidth if isinstance(t, AnyFloat) else 1 << 30)
            return str(narrowest)
        return str(rdu.element_type_of(k.inputs[0].type))
    return str(rdu.element_type_of(k.results[0].type))
