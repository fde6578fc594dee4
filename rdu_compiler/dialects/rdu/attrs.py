"""Attributes and types of the `rdu` dialect: enums (tier, pattern, routing, view mode),
`#rdu.buffer`, `!rdu.stream`, and the shape helpers every pass uses on them."""

from __future__ import annotations

from collections.abc import Sequence
from enum import auto

from xdsl.dialects.builtin import ArrayAttr, IntAttr, TensorType
from xdsl.dialects.utils import EnumAttribute
from xdsl.ir import Attribute, ParametrizedAttribute, TypeAttribute
from xdsl.irdl import irdl_attr_definition
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.utils.exceptions import VerifyException
from xdsl.utils.str_enum import StrEnum

# --------------------------------------------------------------------------- enums
#
# Each prints `#rdu.name<value>` (as `#arith.fastmath<fast>`); in an op's custom syntax
# the attribute prints as `<value>`.


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
    SCATTER = auto()
    HASH_PROBE = auto()  # a cuckoo-hash probe (Monolith's table; Plasticine's HashReduce family)


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


class Routing(StrEnum):
    """How `rdu-place` routes a section's nets (`placement.network.ROUTINGS`)."""

    BALANCED = "balanced"
    DIMENSION_ORDER = "dimension-order"


@irdl_attr_definition
class RoutingAttr(EnumAttribute[Routing]):
    """`#rdu.routing<balanced>` or `#rdu.routing<"dimension-order">` (the `-` needs quotes)."""

    name = "rdu.routing"

    @classmethod
    def parse_parameter(cls, parser: AttrParser) -> Routing:
        with parser.in_angle_brackets():
            return super().parse_parameter(parser)

    def print_parameter(self, printer: Printer) -> None:
        with printer.in_angle_brackets():
            super().print_parameter(printer)


class ViewMode(StrEnum):
    """What an `rdu.view` does: same elements in a new shape, or a static strided window."""

    RESHAPE = auto()
    SLICE = auto()


@irdl_attr_definition
class ViewModeAttr(EnumAttribute[ViewMode]):
    """`#rdu.view_mode<reshape>` or `#rdu.view_mode<slice>`."""

    name = "rdu.view_mode"

    @classmethod
    def parse_parameter(cls, parser: AttrParser) -> ViewMode:
        with parser.in_angle_brackets():
            return super().parse_parameter(parser)

    def print_parameter(self, printer: Printer) -> None:
        with printer.in_angle_brackets():
            super().print_parameter(printer)


# --------------------------------------------------------------------------- buffer, stream


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

    tile_bytes: IntAttr
    pmus: IntAttr
    pmu_capacity: IntAttr
    depth: IntAttr

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

    shape: ArrayAttr[IntAttr]
    element_type: Attribute

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

    def verify(self) -> None:
        if any(d < 0 for d in self.get_shape()):
            raise VerifyException(f"{self}: a stream has a static shape (every dimension >= 0)")


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
