"""The `rdu` dialect: sections, kernels, streams and buffers of a reconfigurable dataflow unit.

A program for the RDU is a sequence of `rdu.section` ops. A section is configured onto
the fabric at once and runs to completion (SambaFlow's "section", SN40L §III); it reads
and writes off-chip tensors only through `rdu.load` / `rdu.store` (AGCU transfers), and
its kernels are connected by `!rdu.stream` values.

```mlir
%out = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64}> ({
  %a = "rdu.load"(%x) <{tier = #rdu.tier<hbm>}> : (tensor<16x64xf32>) -> !rdu.stream<16x64xf32>
  %r = "rdu.kernel"(%a, %init) <{kind = #rdu.pattern<map>, ...}> ({
  ^bb0(%in: f32, %o: f32):
    %m = "arith.maximumf"(%in, %c0) : (f32, f32) -> f32
    "rdu.yield"(%m) : (f32) -> ()
  }) : (!rdu.stream<16x64xf32>, tensor<16x64xf32>) -> !rdu.stream<16x64xf32>
  %s = "rdu.store"(%r) <{tier = #rdu.tier<hbm>}> : (!rdu.stream<16x64xf32>) -> tensor<16x64xf32>
  "rdu.yield"(%s) : (tensor<16x64xf32>) -> ()
}) : () -> tensor<16x64xf32>
```
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import auto
from functools import lru_cache

from xdsl.dialects.builtin import (
    AffineMapAttr,
    ArrayAttr,
    DenseArrayBase,
    IndexType,
    IntAttr,
    IntegerAttr,
    StringAttr,
    TensorType,
    i64,
)
from xdsl.dialects.linalg.attrs import IteratorTypeAttr
from xdsl.dialects.utils import EnumAttribute
from xdsl.ir import (
    Attribute,
    Dialect,
    Operation,
    ParametrizedAttribute,
    Region,
    SSAValue,
    TypeAttribute,
)
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    param_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.traits import HasParent, IsTerminator, Pure
from xdsl.utils.exceptions import VerifyException
from xdsl.utils.str_enum import StrEnum

from rdu_compiler.fabric import Fabric, FabricError, load_fabric

# --------------------------------------------------------------------------- attributes


class Tier(StrEnum):
    """Where an off-chip tensor lives (SN40L §II: HBM by default, DDR for spills)."""

    HBM = auto()
    DDR = auto()


@irdl_attr_definition
class TierAttr(EnumAttribute[Tier]):
    """`#rdu.tier<hbm>` or `#rdu.tier<ddr>`."""

    name = "rdu.tier"

    @classmethod
    def parse_parameter(cls, parser: AttrParser) -> Tier:
        with parser.in_angle_brackets():
            return super().parse_parameter(parser)

    def print_parameter(self, printer: Printer) -> None:
        with printer.in_angle_brackets():
            super().print_parameter(printer)


class Pattern(StrEnum):
    """The parallel pattern a kernel implements (Plasticine's Map/Fold/HashReduce family)."""

    MAP = auto()
    FILL = auto()
    TRANSPOSE = auto()
    REDUCE = auto()
    MATMUL = auto()
    GATHER = auto()
    SCAN = auto()


@irdl_attr_definition
class PatternAttr(EnumAttribute[Pattern]):
    """`#rdu.pattern<matmul>`: what a kernel computes, used by the cost model and reports."""

    name = "rdu.pattern"

    @classmethod
    def parse_parameter(cls, parser: AttrParser) -> Pattern:
        with parser.in_angle_brackets():
            return super().parse_parameter(parser)

    def print_parameter(self, printer: Printer) -> None:
        with printer.in_angle_brackets():
            super().print_parameter(printer)


@irdl_attr_definition
class BufferAttr(ParametrizedAttribute):
    """A PMU-resident tile buffer of one kernel operand.

    `#rdu.buffer<tile_bytes, pmus, pmu_capacity, depth>`: one tile is `tile_bytes` bytes,
    the buffer keeps `depth` tiles (2 = double-buffered) and spans `pmus` PMUs of
    `pmu_capacity` bytes each. The verifier enforces what the hardware does: the buffer
    never exceeds its PMUs (depth * tile_bytes <= pmus * pmu_capacity), depth and
    pmu_capacity are at least 1, and only an empty tile (0 bytes: an init the PCU fills
    itself) may have 0 PMUs. In a section, `pmu_capacity` must be the PMU capacity of the
    fabric the module names (`rdu.fabric`), so a program cannot claim larger PMUs.
    """

    name = "rdu.buffer"

    tile_bytes: IntAttr = param_def(IntAttr)
    pmus: IntAttr = param_def(IntAttr)
    pmu_capacity: IntAttr = param_def(IntAttr)
    depth: IntAttr = param_def(IntAttr)

    def __init__(self, tile_bytes: int, pmus: int, pmu_capacity: int, depth: int = 2):
        super().__init__(IntAttr(tile_bytes), IntAttr(pmus), IntAttr(pmu_capacity), IntAttr(depth))

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        with parser.in_angle_brackets():
            values = parser.parse_comma_separated_list(parser.Delimiter.NONE, parser.parse_integer)
        if len(values) != 4:
            parser.raise_error("expected #rdu.buffer<tile_bytes, pmus, pmu_capacity, depth>")
        return [IntAttr(v) for v in values]

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string(
            f"<{self.tile_bytes.data}, {self.pmus.data}, {self.pmu_capacity.data}, {self.depth.data}>"
        )

    def verify(self) -> None:
        tile, pmus, cap, depth = self.tile_bytes.data, self.pmus.data, self.pmu_capacity.data, self.depth.data
        if tile < 0 or pmus < 0 or cap < 1 or depth < 1:
            raise VerifyException(
                f"#rdu.buffer<{tile}, {pmus}, {cap}, {depth}>: tile_bytes and pmus must be >= 0, "
                "pmu_capacity and depth >= 1; re-run rdu-allocate"
            )
        if tile > 0 and pmus == 0:
            raise VerifyException(
                f"#rdu.buffer<{tile}, 0, {cap}, {depth}>: a buffer of {tile} B tiles on 0 PMUs; re-run rdu-allocate"
            )
        need = self.depth.data * self.tile_bytes.data
        have = self.pmus.data * self.pmu_capacity.data
        if need > have:
            raise VerifyException(
                f"buffer of {self.depth.data} x {self.tile_bytes.data} B tiles needs {need} B but "
                f"its {self.pmus.data} PMU(s) hold {have} B; give it more PMUs or smaller tiles"
            )


@irdl_attr_definition
class StreamType(ParametrizedAttribute, TypeAttribute):
    """`!rdu.stream<16x64xf32>`: a tensor flowing tile by tile between kernels of one section."""

    name = "rdu.stream"

    shape: ArrayAttr[IntAttr] = param_def(ArrayAttr[IntAttr])
    element_type: Attribute = param_def(Attribute)

    def __init__(self, shape: Sequence[int], element_type: Attribute):
        super().__init__(ArrayAttr([IntAttr(d) for d in shape]), element_type)

    def get_shape(self) -> tuple[int, ...]:
        return tuple(d.data for d in self.shape.data)

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        with parser.in_angle_brackets():
            shape, elt = parser.parse_ranked_shape()
        return [ArrayAttr([IntAttr(d) for d in shape]), elt]

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string("<")
        for d in self.get_shape():
            printer.print_string(f"{d}x")
        printer.print_attribute(self.element_type)
        printer.print_string(">")


def shape_of(t: Attribute) -> tuple[int, ...]:
    """Static shape of a tensor or stream type; scalars are `()`.

    Raises:
        ValueError: for a dynamic tensor dimension (the RDU needs static shapes).
    """
    if isinstance(t, StreamType):
        return t.get_shape()
    if isinstance(t, TensorType):
        shape = tuple(t.get_shape())
        if any(d < 0 for d in shape):
            raise ValueError(f"dynamic shape {t} is not supported; export with static shapes")
        return shape
    return ()


def element_type_of(t: Attribute) -> Attribute:
    """Element type of a tensor or stream type; a scalar type is its own element type."""
    if isinstance(t, StreamType | TensorType):
        return t.element_type
    return t


def as_stream(t: Attribute) -> Attribute:
    """The stream type with the same shape and element type as tensor type `t`."""
    if isinstance(t, TensorType):
        return StreamType(shape_of(t), t.element_type)
    return t


def as_tensor(t: Attribute) -> Attribute:
    """The tensor type with the same shape and element type as stream type `t`."""
    if isinstance(t, StreamType):
        return TensorType(t.element_type, t.get_shape())
    return t


# --------------------------------------------------------------------------- ops


@irdl_op_definition
class KernelOp(IRDLOperation):
    """One pipeline stage: a perfectly nested loop over `domain` with a scalar payload.

    Semantics are those of `linalg.generic`: `indexing_maps` has one affine map per
    input and init operand (from the iteration domain to the operand's indices);
    `iterator_types` marks each loop parallel or reduction; the payload block gets one
    scalar per input and init, then one block argument per capture (a whole tensor read
    at computed indices through `tensor.extract`: the gather pattern), and yields one
    value per result. Scans (`kind = scan`) yield the combiner of two scalars along
    `scan_dim`. After `rdu-tile`/`rdu-allocate`/`rdu-place` the kernel carries its tile
    sizes, PCUs, one `#rdu.buffer` per input/init operand and its grid sites.

    `init_fills = array<i64: ...>` (one entry per init, set by `rdu-fuse`): `-1` reads
    the init operand; `c >= 0` starts the accumulators at the scalar capture `c` (a
    folded `linalg.fill`: the PCU initialises its accumulator, nothing is streamed in),
    and the init operand is then a `tensor.empty` that only gives the result's shape.

    Sites are flattened `(row, col)` pairs: `pcu_sites = array<i64: 0, 0, 1, 1>` puts
    its two PCUs on (0, 0) and (1, 1); `pmu_sites` lists the PMUs of its buffers, buffer
    after buffer; `agcu_sites` the AGCUs its gathers read through (one per net, see
    `rdu_compiler.placement`).
    """

    name = "rdu.kernel"

    inputs = var_operand_def()
    inits = var_operand_def()
    captures = var_operand_def()
    res = var_result_def()

    kind = prop_def(PatternAttr)
    domain = prop_def(DenseArrayBase)
    indexing_maps = prop_def(ArrayAttr[AffineMapAttr])
    iterator_types = prop_def(ArrayAttr[IteratorTypeAttr])
    sym_name = opt_prop_def(StringAttr)
    scan_dim = opt_prop_def(IntegerAttr)
    scan_inclusive = opt_prop_def(IntegerAttr)
    tile = opt_prop_def(DenseArrayBase)
    pcus = opt_prop_def(IntegerAttr)
    buffers = opt_prop_def(ArrayAttr[BufferAttr])
    capture_tiers = opt_prop_def(ArrayAttr[TierAttr])
    init_fills = opt_prop_def(DenseArrayBase)
    pcu_sites = opt_prop_def(DenseArrayBase)
    pmu_sites = opt_prop_def(DenseArrayBase)
    agcu_sites = opt_prop_def(DenseArrayBase)

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
        return self.sym_name.data if self.sym_name is not None else self.kind.data.value

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


@irdl_op_definition
class IndexOp(IRDLOperation):
    """`rdu.index`: the current iteration index along loop `dim` of the enclosing kernel."""

    name = "rdu.index"
    dim = prop_def(IntegerAttr)
    result = result_def(IndexType)
    traits = traits_def(HasParent(KernelOp), Pure())

    def __init__(self, dim: int):
        super().__init__(properties={"dim": IntegerAttr(dim, i64)}, result_types=[IndexType()])


@irdl_op_definition
class SectionOp(IRDLOperation):
    """A set of kernels configured onto the fabric at once and run to completion.

    `pcus_available` / `pmus_available` are the fabric's unit counts; the verifier refuses
    a section whose kernels use more units than that, or whose kernels' sites overlap.
    `reason` says why the section ends where it does. `grid = array<i64: rows, cols>`
    (set by `rdu-place`) is the fabric's grid: the verifier then refuses a site off it,
    a PCU on a PMU site (checkerboard: (row + col) even is a PCU) or the reverse, and a
    load/store/gather routed through an AGCU that is not on the grid's edge (col -1 or
    cols). `routing` (set by `rdu-place`: "balanced" or "dimension-order", absent means
    dimension-order) names how the routes between these endpoints are chosen
    (`placement.network`); every route is minimal and stays on the grid.
    """

    name = "rdu.section"

    res = var_result_def()
    sym_name = prop_def(StringAttr)
    pcus_available = prop_def(IntegerAttr)
    pmus_available = prop_def(IntegerAttr)
    reason = opt_prop_def(StringAttr)
    grid = opt_prop_def(DenseArrayBase)
    routing = opt_prop_def(StringAttr)
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
        if self.routing is not None and self.routing.data not in ("balanced", "dimension-order"):
            raise VerifyException(
                f"section '{name}': routing {self.routing.data!r} is not one of 'balanced', 'dimension-order'"
            )
        grid = tuple(self.grid.get_values()) if self.grid is not None else None
        fabric = module_fabric(self)
        if fabric is not None:
            verify_against_fabric(self, fabric)
        _verify_sites(name, kernels, grid)
        _verify_agcus(name, self, grid)


def module_fabric(op: Operation) -> Fabric | None:
    """The fabric named by the `rdu.fabric` attribute of the outermost module that is or
    encloses `op` (None when no module names one).

    Raises:
        VerifyException: the named preset or spec file cannot be loaded.
    """
    from xdsl.dialects.builtin import ModuleOp

    name = None
    parent: Operation | None = op
    while parent is not None:
        if isinstance(parent, ModuleOp) and isinstance(parent.attributes.get(FABRIC_ATTR), StringAttr):
            name = parent.attributes[FABRIC_ATTR].data  # type: ignore[union-attr]
        parent = parent.parent_op()
    if name is None:
        return None
    try:
        return _load_fabric(name)
    except FabricError as e:
        raise VerifyException(
            f"the module names fabric {name!r} ({FABRIC_ATTR}), which cannot be loaded, so its capacities cannot be "
            f"checked: {e} (a relative spec path is read from the current folder; point {FABRIC_ATTR} at the spec)"
        ) from e


#: The module attribute naming the fabric a program is compiled for (preset or spec path).
FABRIC_ATTR = "rdu.fabric"


@lru_cache(maxsize=16)
def _load_fabric(name: str) -> Fabric:
    return load_fabric(name)


def verify_against_fabric(op: SectionOp, fabric: Fabric) -> None:
    """Check a section against `fabric`: units available, grid shape, PMU capacity of every
    buffer, and every PCU/PMU/AGCU site on the fabric's grid (when the section has no
    `grid`), as well as the section's own rules. The verifier calls it with the fabric the
    module names; the emulator with the fabric it runs on.

    Raises:
        VerifyException: naming the section, kernel and field that do not fit.
    """
    section, kernels = op.sym_name.data, op.kernels()
    grid = tuple(op.grid.get_values()) if op.grid is not None else None
    where = f"section '{section}' on fabric '{fabric.name}'"
    for field, have in (("pcus_available", fabric.num_pcus), ("pmus_available", fabric.num_pmus)):
        claimed = getattr(op, field).value.data
        if claimed > have:
            raise VerifyException(f"{where}: {field} = {claimed} but the fabric has {have}; re-run rdu-section")
    if grid is not None and grid != (fabric.rows, fabric.cols):
        raise VerifyException(
            f"{where}: grid {list(grid)} but the fabric's grid is {fabric.rows} x {fabric.cols}; re-run rdu-place"
        )
    for k in kernels:
        for i, b in enumerate(k.buffers.data if k.buffers is not None else ()):
            if b.pmu_capacity.data != fabric.pmu.capacity_bytes:
                raise VerifyException(
                    f"{where}: kernel '{k.label}' buffer {i} claims PMUs of {b.pmu_capacity.data} B but the "
                    f"fabric's PMUs hold {fabric.pmu.capacity_bytes} B; re-run rdu-allocate"
                )
    if grid is None:  # sites on an unmarked section: check them against the fabric's grid
        _verify_sites(section, kernels, (fabric.rows, fabric.cols))
        _verify_agcus(section, op, (fabric.rows, fabric.cols))


def site_pairs(attr: DenseArrayBase, what: str) -> list[tuple[int, int]]:
    """`(row, col)` pairs of a flattened site array; raises VerifyException on an odd length."""
    values = [int(v) for v in attr.get_values()]
    if len(values) % 2:
        raise VerifyException(f"{what} must be (row, col) pairs, got {len(values)} values")
    return list(zip(values[0::2], values[1::2], strict=True))


def _off_grid(site: tuple[int, int], grid: tuple[int, ...] | None) -> bool:
    r, c = site
    return r < 0 or c < 0 or (grid is not None and (r >= grid[0] or c >= grid[1]))


def _verify_sites(section: str, kernels: list[KernelOp], grid: tuple[int, ...] | None) -> None:
    """No site used twice, none off the grid, PCUs on PCU sites and PMUs on PMU sites."""
    used: dict[tuple[int, int], str] = {}
    shape = f"the {grid[0]} x {grid[1]} grid" if grid else "the grid"
    for k in kernels:
        for field, kind, want in (("pcu_sites", "PCU", 0), ("pmu_sites", "PMU", 1)):
            attr = getattr(k, field)
            if attr is None:
                continue
            for s in site_pairs(attr, f"section '{section}': kernel '{k.label}' {field}"):
                if _off_grid(s, grid):
                    raise VerifyException(f"section '{section}': kernel '{k.label}' placed a {kind} on {s}, off {shape}")
                if (s[0] + s[1]) % 2 != want:
                    other = "PMU" if want == 0 else "PCU"
                    raise VerifyException(
                        f"section '{section}': kernel '{k.label}' placed a {kind} on {s}, a {other} site "
                        "(checkerboard: (row + col) even is a PCU site, odd a PMU site)"
                    )
                if s in used:
                    raise VerifyException(f"section '{section}': kernels '{used[s]}' and '{k.label}' both placed on site {s}")
                used[s] = k.label


def _verify_agcus(section: str, op: SectionOp, grid: tuple[int, ...] | None) -> None:
    """Every recorded AGCU endpoint sits on the grid's left (col -1) or right (col cols) edge."""
    for inner in op.body.block.ops:
        attr = inner.properties.get("agcu_sites")
        if not isinstance(attr, DenseArrayBase):
            continue
        for r, c in site_pairs(attr, f"section '{section}': {inner.name} agcu_sites"):
            edge = c == -1 or (c == grid[1] if grid else c >= 0)
            if r < 0 or (grid is not None and r >= grid[0]) or not edge:
                where = f"col -1 or {grid[1]}" if grid else "col -1 or cols"
                raise VerifyException(
                    f"section '{section}': {inner.name} routed through AGCU ({r}, {c}), off the grid; "
                    f"AGCUs sit on the edges ({where}) of the grid's rows"
                )


@irdl_op_definition
class YieldOp(IRDLOperation):
    """Terminator of kernel payloads (scalars) and sections (off-chip tensors)."""

    name = "rdu.yield"
    values = var_operand_def()
    traits = traits_def(IsTerminator(), HasParent(KernelOp, SectionOp))

    def __init__(self, *values: SSAValue):
        super().__init__(operands=[values])


@irdl_op_definition
class LoadOp(IRDLOperation):
    """AGCU transfer of an off-chip tensor in `tier` into a stream of the enclosing section.

    `agcu_sites` (after `rdu-place`): the AGCU of each net of the transfer, as flattened
    (row, col) pairs on the grid's edge columns."""

    name = "rdu.load"
    source = operand_def(TensorType)
    result = result_def(StreamType)
    tier = prop_def(TierAttr)
    agcu_sites = opt_prop_def(DenseArrayBase)
    traits = traits_def(HasParent(SectionOp))

    def __init__(self, source: SSAValue, tier: Tier = Tier.HBM):
        super().__init__(
            operands=[source], result_types=[as_stream(source.type)], properties={"tier": TierAttr(tier)}
        )


@irdl_op_definition
class StoreOp(IRDLOperation):
    """AGCU transfer of a stream into an off-chip tensor in `tier`; `agcu_sites` as `rdu.load`."""

    name = "rdu.store"
    source = operand_def(StreamType)
    result = result_def(TensorType)
    tier = prop_def(TierAttr)
    agcu_sites = opt_prop_def(DenseArrayBase)
    traits = traits_def(HasParent(SectionOp))

    def __init__(self, source: SSAValue, tier: Tier = Tier.HBM):
        super().__init__(
            operands=[source], result_types=[as_tensor(source.type)], properties={"tier": TierAttr(tier)}
        )


@irdl_op_definition
class ViewOp(IRDLOperation):
    """A data layout change folded into buffer access patterns, not a kernel.

    `mode = "reshape"`: same elements, new shape (`tensor.expand_shape`/`collapse_shape`).
    `mode = "slice"`: a static strided window (`tensor.extract_slice`), with `offsets`,
    `sizes`, `strides`. Works on tensors and on streams.
    """

    name = "rdu.view"
    source = operand_def()
    result = result_def()
    mode = prop_def(StringAttr)
    offsets = opt_prop_def(DenseArrayBase)
    sizes = opt_prop_def(DenseArrayBase)
    strides = opt_prop_def(DenseArrayBase)
    traits = traits_def(Pure())


@irdl_op_definition
class ConcatOp(IRDLOperation):
    """Concatenation along `dim`: consecutive writes into one buffer at offsets."""

    name = "rdu.concat"
    sources = var_operand_def()
    result = result_def()
    dim = prop_def(IntegerAttr)
    traits = traits_def(Pure())


@irdl_op_definition
class PadOp(IRDLOperation):
    """Constant padding (`tensor.pad`): the address generator returns `value` outside the source."""

    name = "rdu.pad"
    source = operand_def()
    value = operand_def()
    result = result_def()
    low = prop_def(DenseArrayBase)
    high = prop_def(DenseArrayBase)
    traits = traits_def(Pure())


LAYOUT_OPS = (ViewOp, ConcatOp, PadOp)

RDU = Dialect(
    "rdu",
    [KernelOp, IndexOp, SectionOp, YieldOp, LoadOp, StoreOp, ViewOp, ConcatOp, PadOp],
    [TierAttr, PatternAttr, BufferAttr, StreamType],
)
