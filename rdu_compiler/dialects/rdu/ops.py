"""The `rdu` dialect's compute ops: `rdu.section`, `rdu.kernel`, `rdu.index`, `rdu.yield`.

The off-chip transfers and layout ops (`rdu.load`, `rdu.store`, `rdu.view`, `rdu.concat`,
`rdu.pad`) are in `layout.py`; attributes and types in `attrs.py`; the checks of a section
against its fabric in `fabric_checks.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xdsl.dialects.builtin import (
    I64,
    AffineMapAttr,
    ArrayAttr,
    DenseArrayBase,
    FloatAttr,
    IndexType,
    IntegerAttr,
    StringAttr,
    TensorType,
    i64,
)
from xdsl.dialects.linalg.attrs import IteratorTypeAttr
from xdsl.ir import Attribute, Region, SSAValue
from xdsl.ir.affine import AffineConstantExpr, AffineMap
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    irdl_op_definition,
    opt_prop_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.traits import HasParent, IsTerminator, Pure
from xdsl.utils.exceptions import VerifyException

from rdu_compiler.dialects.rdu.attrs import (
    BufferAttr,
    Pattern,
    PatternAttr,
    Routing,
    RoutingAttr,
    StreamType,
    TierAttr,
    element_type_of,
    shape_of,
)
from rdu_compiler.dialects.rdu.fabric_checks import (
    module_fabric,
    verify_against_fabric,
    verify_agcus,
    verify_sites,
)

# --------------------------------------------------------------------------- ops

_I64_ARRAY = DenseArrayBase.constr(i64)


@irdl_op_definition
class KernelOp(IRDLOperation):
    """One pipeline stage: a perfectly nested loop over `domain` with a scalar payload.

    Semantics are those of `linalg.generic`: `indexing_maps` has one affine map per
    input and init operand (from the iteration domain to the operand's indices);
    `iterator_types` marks each loop parallel or reduction; the payload block gets one
    scalar per input and init, then one block argument per capture (a whole tensor read
    at computed indices through `tensor.extract`: the gather pattern), and yields one
    value per result. Scans (`kind = scan`) yield the combiner of two scalars along
    `scan_dim`. Scatters (`kind = scatter`, `scatter_dims = array<i64: ...>`, one entry
    per index input) read K index inputs then the updates over the updates' domain and
    write each point's value into the init at `map(point)` plus index input c on dim
    `scatter_dims[c]`: the payload yields `combine(update, acc)` (or the update: last
    write wins), applied in domain order. Hash probes (`kind = hash_probe`,
    `hash_seeds = array<i64: s1, s2>`; issue 16) look up each of N raw 64-bit IDs (the one
    input, `tensor<Nxi64>`) in a cuckoo index (the one capture, `tensor<Bx4x2xi64>`: B
    buckets, a power of two, of 4 slots of (ID bits, row number or -1)) and give its row
    number, or `miss_row` (default -1) if absent (the one init/result, `tensor<Nxi64>`): candidate buckets
    `mix64(id, s) & (B - 1)` for both seeds, both read, every slot compared
    (`embedding.probe.probe`); the payload only yields its init. `rdu-tile` may move the
    index from the capture to a second input read at `(d0) -> (0, 0, 0)`: held whole in the
    kernel's PMUs. After `rdu-tile`/`rdu-allocate`/`rdu-place` the kernel carries its tile
    sizes, PCUs, one `#rdu.buffer` per input/init operand and its grid sites.

    `hot_rows = H` and `hot_fraction = f` (set by `rdu-tier-rows` on a row gather: one
    capture, a 2-d table, its row index from data): rows [0, H) of the table live in HBM
    (the hot tier, `capture_tiers`), rows [H, rows) in DDR; each row access reads the tier
    its row number falls in, and the cost model expects a share f of them to be hot.

    `init_fills = array<i64: ...>` (one entry per init, set by `rdu-fuse`): `-1` reads
    the init operand; `c >= 0` starts the accumulators at the scalar capture `c` (a
    folded `linalg.fill`: the PCU initialises its accumulator, nothing is streamed in),
    and the init operand is then a `tensor.empty` that only gives the result's shape.

    Sites are flattened `(row, col)` pairs: `pcu_sites = array<i64: 0, 0, 1, 1>` puts
    its two PCUs on (0, 0) and (1, 1); `pmu_sites` lists the PMUs of its buffers, buffer
    after buffer; `agcu_sites` the AGCUs its gathers read through (one per net, see
    `rdu_compiler.plan.placement`).
    """

    name = "rdu.kernel"

    inputs = var_operand_def()
    inits = var_operand_def()
    captures = var_operand_def()
    res = var_result_def()

    kind = prop_def(PatternAttr)
    domain = prop_def(_I64_ARRAY)
    indexing_maps = prop_def(ArrayAttr[AffineMapAttr])
    iterator_types = prop_def(ArrayAttr[IteratorTypeAttr])
    sym_name = opt_prop_def(StringAttr)
    scan_dim = opt_prop_def(IntegerAttr)
    scan_inclusive = opt_prop_def(IntegerAttr)
    scatter_dims = opt_prop_def(_I64_ARRAY)
    hash_seeds = opt_prop_def(_I64_ARRAY)
    miss_row = opt_prop_def(IntegerAttr)
    tile = opt_prop_def(_I64_ARRAY)
    pcus = opt_prop_def(IntegerAttr)
    buffers = opt_prop_def(ArrayAttr[BufferAttr])
    capture_tiers = opt_prop_def(ArrayAttr[TierAttr])
    hot_rows = opt_prop_def(IntegerAttr)
    hot_fraction = opt_prop_def(FloatAttr)
    init_fills = opt_prop_def(_I64_ARRAY)
    pcu_sites: DenseArrayBase[Any] | None = opt_prop_def(_I64_ARRAY)  # written by placement as plain arrays
    pmu_sites: DenseArrayBase[Any] | None = opt_prop_def(_I64_ARRAY)  # written by placement as plain arrays
    agcu_sites = opt_prop_def(_I64_ARRAY)

    body = region_def("single_block")
    irdl_options = (AttrSizedOperandSegments(as_property=True),)

    def __init__(
        self,
        inputs: Sequence[SSAValue],
        inits: Sequence[SSAValue],
        captures: Sequence[SSAValue],
        result_types: Sequence[Attribute],
        kind: Pattern,
        domain: Sequence[int],
        indexing_maps: Sequence[AffineMapAttr],
        iterator_types: Sequence[IteratorTypeAttr],
        body: Region,
        extra: dict[str, Attribute] | None = None,
    ):
        props: dict[str, Attribute] = {
            "kind": PatternAttr(kind),
            "domain": DenseArrayBase.from_list(i64, list(domain)),
            "indexing_maps": ArrayAttr(indexing_maps),
            "iterator_types": ArrayAttr(iterator_types),
        }
        props.update(extra or {})
        super().__init__(
            operands=[inputs, inits, captures],
            result_types=[result_types],
            properties=props,
            regions=[body],
        )

    # Convenience accessors (plain Python values) used by passes, cost and emulator.
    @property
    def domain_sizes(self) -> tuple[int, ...]:
        return tuple(self.domain.get_values())

    @property
    def tile_sizes(self) -> tuple[int, ...]:
        if self.tile is None:
            return self.domain_sizes
        return tuple(self.tile.get_values())

    @property
    def reduction_dims(self) -> tuple[int, ...]:
        return tuple(
            i for i, it in enumerate(self.iterator_types.data) if it.data.value == "reduction"
        )

    @property
    def label(self) -> str:
        return self.sym_name.data if self.sym_name is not None else str(self.kind.data.value)

    def verify_(self) -> None:
        n_mapped = len(self.inputs) + len(self.inits)
        if len(self.indexing_maps.data) != n_mapped:
            raise VerifyException(
                f"kernel '{self.label}': {len(self.indexing_maps.data)} indexing maps for "
                f"{n_mapped} input/init operands"
            )
        rank = len(self.domain_sizes)
        if len(self.iterator_types.data) != rank:
            raise VerifyException(f"kernel '{self.label}': iterator_types do not match domain rank")
        if any(m.data.num_dims != rank for m in self.indexing_maps.data):
            raise VerifyException(f"kernel '{self.label}': indexing map rank differs from domain")
        if len(self.inits) != len(self.res):
            raise VerifyException(f"kernel '{self.label}': one init per result is required")
        if self.tile is not None and len(self.tile_sizes) != rank:
            raise VerifyException(f"kernel '{self.label}': tile has {len(self.tile_sizes)} sizes for domain rank {rank}")
        if self.buffers is not None and len(self.buffers.data) != n_mapped:
            raise VerifyException(f"kernel '{self.label}': one #rdu.buffer per input/init operand is required")
        if self.init_fills is not None:
            fills = [int(f) for f in self.init_fills.get_values()]
            if len(fills) != len(self.inits):
                raise VerifyException(f"kernel '{self.label}': init_fills has {len(fills)} entries for {len(self.inits)} inits")
            for i, f in enumerate(fills):
                if f == -1:
                    continue
                if not 0 <= f < len(self.captures):
                    raise VerifyException(f"kernel '{self.label}': init {i} is filled from capture {f}, which does not exist")
                if self.captures[f].type != element_type_of(self.inits[i].type):
                    raise VerifyException(
                        f"kernel '{self.label}': init {i} ({self.inits[i].type}) is filled from capture {f} "
                        f"of type {self.captures[f].type}; the fill value must be a scalar of the element type"
                    )
        if any(n < 1 for n in self.domain_sizes):
            raise VerifyException(
                f"kernel '{self.label}': domain {list(self.domain_sizes)} has a loop of fewer than 1 iteration; "
                "every loop bound is >= 1 (an empty tensor has no kernel)"
            )
        if self.tile is not None and any(not 1 <= t <= n for t, n in zip(self.tile_sizes, self.domain_sizes, strict=True)):
            raise VerifyException(
                f"kernel '{self.label}': tile {list(self.tile_sizes)} is not within [1, domain] for domain "
                f"{list(self.domain_sizes)}; re-run rdu-tile"
            )
        for j, (v, m) in enumerate(zip((*self.inputs, *self.inits), self.indexing_maps.data, strict=True)):
            if isinstance(v.type, StreamType | TensorType) and len(m.data.results) != len(v.type.get_shape()):
                raise VerifyException(
                    f"kernel '{self.label}': operand {j} ({v.type}) has rank {len(v.type.get_shape())} but its "
                    f"indexing map {m.data} gives {len(m.data.results)} indices; give one index per dim"
                )
        if self.scan_dim is not None and not 0 <= self.scan_dim.value.data < rank:
            raise VerifyException(
                f"kernel '{self.label}': scan_dim {self.scan_dim.value.data} is not a loop of its {rank}-d domain"
            )
        if (self.kind.data == Pattern.SCATTER) != (self.scatter_dims is not None):
            raise VerifyException(f"kernel '{self.label}': a scatter kernel, and only a scatter kernel, has scatter_dims")
        if self.scatter_dims is not None:
            dims = [int(d) for d in self.scatter_dims.get_values()]
            dest = self.inits[0].type if len(self.inits) == 1 else None
            if dest is None or len(self.inputs) < len(dims) or any(not 0 <= d < len(shape_of(dest)) for d in dims):
                raise VerifyException(
                    f"kernel '{self.label}': scatter_dims {dims} need one destination init and one index input per "
                    "entry, each naming a destination dim"
                )
        if (self.kind.data == Pattern.HASH_PROBE) != (self.hash_seeds is not None):
            raise VerifyException(f"kernel '{self.label}': a hash_probe kernel, and only a hash_probe kernel, has hash_seeds")
        if self.hash_seeds is not None:
            verify_hash_probe(self)
        elif self.miss_row is not None:
            raise VerifyException(f"kernel '{self.label}': only a hash_probe kernel has a miss_row")
        if (self.hot_rows is None) != (self.hot_fraction is None):
            raise VerifyException(f"kernel '{self.label}': hot_rows and hot_fraction go together (rdu-tier-rows sets both)")
        if self.hot_rows is not None and self.hot_fraction is not None:
            shape = shape_of(self.captures[0].type) if len(self.captures) == 1 else ()
            h, f = self.hot_rows.value.data, self.hot_fraction.value.data
            if len(shape) != 2 or not 0 <= h <= shape[0] or not 0.0 <= f <= 1.0:
                raise VerifyException(
                    f"kernel '{self.label}': hot_rows = {h}, hot_fraction = {f} need one 2-d table capture, "
                    f"0 <= hot_rows <= its rows and 0 <= hot_fraction <= 1 (capture shape {list(shape)})"
                )
        if self.pcus is not None and self.pcus.value.data < 1:
            raise VerifyException(f"kernel '{self.label}': pcus = {self.pcus.value.data}; a kernel runs on >= 1 PCU")
        n_args = n_mapped + len(self.captures)
        if len(self.body.block.args) != n_args:
            raise VerifyException(
                f"kernel '{self.label}': payload has {len(self.body.block.args)} block arguments, expected {n_args}"
            )
        parent = self.parent_op()
        if not isinstance(parent, SectionOp):
            for v in (*self.operands, *self.results):
                if isinstance(v.type, StreamType):
                    raise VerifyException(
                        f"kernel '{self.label}': streams connect kernels of one section only; "
                        "this kernel is outside any rdu.section"
                    )

    @property
    def total_pmus(self) -> int:
        if self.buffers is None:
            return 0
        return sum(b.pmus.data for b in self.buffers.data)


def verify_hash_probe(k: KernelOp) -> None:
    """A hash_probe kernel's shape: 2 seeds; one i64 input of N IDs, one i64 init of N row
    numbers, both read at the identity over a 1-d domain of N; the index
    `tensor<Bx4x2xi64>` with B a power of two, either one capture (probed in its memory
    tier) or a second input read at `(d0) -> (0, 0, 0)` (held whole in the kernel's PMUs);
    a payload that yields its init."""
    where = f"kernel '{k.label}' (hash_probe)"
    seeds = list(k.hash_seeds.get_values()) if k.hash_seeds is not None else []
    if len(seeds) != 2:
        raise VerifyException(f"{where}: hash_seeds must give the 2 bucket-hash seeds, got {seeds}")
    resident = len(k.inputs) == 2 and not k.captures
    if not (resident or (len(k.inputs) == 1 and len(k.captures) == 1)) or len(k.inits) != 1:
        raise VerifyException(
            f"{where}: needs 1 input (the IDs), 1 init (the row numbers) and the index as 1 capture or as a second "
            f"input, got {len(k.inputs)} inputs, {len(k.inits)} inits, {len(k.captures)} captures"
        )
    n = k.domain_sizes
    for what, v in (("IDs", k.inputs[0]), ("row numbers", k.inits[0])):
        if len(n) != 1 or shape_of(v.type) != n or str(element_type_of(v.type)) != "i64":
            raise VerifyException(
                f"{where}: the {what} must be {n[0] if len(n) == 1 else 'N'} x i64 over a 1-d domain, got {v.type} "
                f"over domain {list(n)}; raw IDs are 64-bit and are never narrowed"
            )
    maps = [m.data for m in k.indexing_maps.data]
    whole = AffineMap(1, 0, (AffineConstantExpr(0),) * 3)
    if maps[0] != AffineMap.identity(1) or maps[-1] != AffineMap.identity(1) or (resident and maps[1] != whole):
        raise VerifyException(
            f"{where}: the IDs and row numbers are read at the identity map, a resident index at (d0) -> (0, 0, 0)"
        )
    index = (k.inputs[1] if resident else k.captures[0]).type
    shape = shape_of(index) if isinstance(index, TensorType | StreamType) else ()
    if len(shape) != 3 or shape[1:] != (4, 2) or shape[0] < 1 or shape[0] & (shape[0] - 1) or str(element_type_of(index)) != "i64":
        raise VerifyException(
            f"{where}: the index must be tensor<Bx4x2xi64> (B buckets, a power of two, of 4 slots of ID and row), got {index}"
        )
    block = k.body.block
    last = block.last_op
    if len(block.ops) != 1 or not isinstance(last, YieldOp) or list(last.values) != [block.args[len(k.inputs)]]:
        raise VerifyException(f"{where}: the payload must only yield its init (the probe is the pattern's)")


@irdl_op_definition
class IndexOp(IRDLOperation):
    """The current iteration index along loop `dim` of the enclosing kernel.

    ```mlir
    %i = rdu.index 1 : index
    ```

    The verifier refuses a `dim` outside the enclosing kernel's domain.
    """

    name = "rdu.index"
    dim = prop_def(IntegerAttr[I64])
    result = result_def(IndexType)
    traits = traits_def(HasParent(KernelOp), Pure())

    assembly_format = "$dim attr-dict `:` type($result)"

    def __init__(self, dim: int):
        super().__init__(properties={"dim": IntegerAttr(dim, i64)}, result_types=[IndexType()])

    def verify_(self) -> None:
        dim = self.dim.value.data
        kernel = self.parent_op()
        while kernel is not None and not isinstance(kernel, KernelOp):
            kernel = kernel.parent_op()
        rank = len(kernel.domain_sizes) if kernel is not None else None
        if dim < 0 or (rank is not None and dim >= rank):
            raise VerifyException(
                f"rdu.index {dim}: the enclosing kernel's domain has {rank} loops, so dim must be in "
                f"[0, {rank}); index an existing loop"
            )


@irdl_op_definition
class SectionOp(IRDLOperation):
    """A set of kernels configured onto the fabric at once and run to completion.

    `pcus_available` / `pmus_available` are the fabric's unit counts; the verifier refuses
    a section whose kernels use more units than that, or whose kernels' sites overlap.
    `reason` says why the section ends where it does. `grid = array<i64: rows, cols>`
    (set by `rdu-place`) is the fabric's grid: the verifier then refuses a site off it,
    a PCU on a PMU site (checkerboard: (row + col) even is a PCU) or the reverse, and a
    load/store/gather routed through an AGCU that is not on the grid's edge (col -1 or
    cols). `routing` (set by `rdu-place`: `#rdu.routing<balanced>` or
    `#rdu.routing<"dimension-order">`, absent means dimension-order) names how the routes between these endpoints are chosen
    (`placement.network`); every route is minimal and stays on the grid.
    """

    name = "rdu.section"

    res = var_result_def()
    sym_name = prop_def(StringAttr)
    pcus_available = prop_def(IntegerAttr)
    pmus_available = prop_def(IntegerAttr)
    reason = opt_prop_def(StringAttr)
    grid = opt_prop_def(_I64_ARRAY)
    routing = opt_prop_def(RoutingAttr)
    body = region_def("single_block")

    def __init__(self, name: str, result_types: Sequence[Attribute], body: Region, pcus: int, pmus: int, reason: str = ""):
        super().__init__(
            result_types=[result_types],
            regions=[body],
            properties={
                "sym_name": StringAttr(name),
                "pcus_available": IntegerAttr(pcus, i64),
                "pmus_available": IntegerAttr(pmus, i64),
                "reason": StringAttr(reason),
            },
        )

    def kernels(self) -> list[KernelOp]:
        return [op for op in self.body.block.ops if isinstance(op, KernelOp)]

    def verify_(self) -> None:
        name = self.sym_name.data
        kernels = self.kernels()
        pcus = sum(k.pcus.value.data if k.pcus is not None else 0 for k in kernels)
        pmus = sum(k.total_pmus for k in kernels)
        if pcus > self.pcus_available.value.data:
            raise VerifyException(
                f"section '{name}' uses {pcus} PCUs but the fabric has {self.pcus_available.value.data}; "
                "cut it into more sections (rdu-section)"
            )
        if pmus > self.pmus_available.value.data:
            raise VerifyException(
                f"section '{name}' uses {pmus} PMUs but the fabric has {self.pmus_available.value.data}; "
                "cut it into more sections or use smaller tiles (rdu-section, rdu-tile)"
            )
        for r in self.res:
            if isinstance(r.type, StreamType):
                raise VerifyException(f"section '{name}': results must be tensors (rdu.store), not streams")
        grid = tuple(self.grid.get_values()) if self.grid is not None else None
        fabric = module_fabric(self)
        if fabric is not None:
            verify_against_fabric(self, fabric)
        if grid is not None and (len(grid) != 2 or min(grid) < 1):
            raise VerifyException(f"section '{name}': grid {list(grid)} must be [rows, cols], both >= 1; re-run rdu-place")
        if self.body.block.last_op is None or not isinstance(self.body.block.last_op, YieldOp):
            raise VerifyException(f"section '{name}': its body must end with rdu.yield of its results")
        verify_sites(name, kernels, grid)
        verify_agcus(name, self, grid)

    @property
    def routing_kind(self) -> Routing:
        """The recorded routing; dimension-order when `rdu-place` recorded none."""
        return self.routing.data if self.routing is not None else Routing.DIMENSION_ORDER


@irdl_op_definition
class YieldOp(IRDLOperation):
    """Terminator of kernel payloads (scalars) and sections (off-chip tensors).

    ```mlir
    rdu.yield %m : f32
    rdu.yield %s0, %s1 : tensor<32xf32>, tensor<4x8xf32>
    ```

    In a kernel it yields one scalar of each result's element type; in a section one
    tensor of each result's type. The verifier refuses any other count or type.
    """

    name = "rdu.yield"
    values = var_operand_def()
    traits = traits_def(IsTerminator(), HasParent(KernelOp, SectionOp))

    assembly_format = "attr-dict ($values^ `:` type($values))?"

    def __init__(self, *values: SSAValue):
        super().__init__(operands=[values])

    def verify_(self) -> None:
        parent = self.parent_op()
        if isinstance(parent, KernelOp):
            want = [element_type_of(r.type) for r in parent.res]
            where = f"rdu.yield of kernel '{parent.label}'"
            what = "one scalar of each result's element type"
        elif isinstance(parent, SectionOp):
            want = [r.type for r in parent.res]
            where = f"rdu.yield of section '{parent.sym_name.data}'"
            what = "one tensor per section result (rdu.store the streams first)"
        else:
            return
        have = [v.type for v in self.values]
        if len(have) != len(want):
            raise VerifyException(f"{where}: yields {len(have)} values for {len(want)} results; yield {what}")
        for i, (h, w) in enumerate(zip(have, want, strict=True)):
            if h != w:
                raise VerifyException(f"{where}: value {i} is {h} but result {i} needs {w}; yield {what}")
