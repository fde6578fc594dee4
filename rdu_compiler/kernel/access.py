"""Tile geometry over plain data: access patterns, tile grids, buffer and traffic sizes.

An operand's access pattern is its indexing map as linear forms: one `(coeffs, const)`
per operand dimension, `index = sum(coeffs[d] * i_d) + const` over the loop indices
`i_d`. Conv windows (`oh * stride + kh`) are linear; floordiv/mod are not supported.
The tiler, the cost model's traffic count and the emulator all size tiles with these
functions, so the static byte counts and the emulator's measured ones agree by
construction of the same geometry, and a test checks that they do.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from xdsl.ir.affine import (
    AffineBinaryOpExpr,
    AffineBinaryOpKind,
    AffineConstantExpr,
    AffineDimExpr,
    AffineExpr,
    AffineMap,
)

from rdu_compiler.errors import CompileError

LinearForm = tuple[tuple[int, ...], int]


def _linear(expr: AffineExpr, rank: int) -> LinearForm:
    if isinstance(expr, AffineDimExpr):
        coeffs = [0] * rank
        coeffs[expr.position] = 1
        return tuple(coeffs), 0
    if isinstance(expr, AffineConstantExpr):
        return (0,) * rank, expr.value
    if isinstance(expr, AffineBinaryOpExpr):
        lhs, rhs = _linear(expr.lhs, rank), _linear(expr.rhs, rank)
        if expr.kind == AffineBinaryOpKind.Add:
            return tuple(a + b for a, b in zip(lhs[0], rhs[0], strict=True)), lhs[1] + rhs[1]
        if expr.kind == AffineBinaryOpKind.Mul:
            if not any(rhs[0]):
                return tuple(a * rhs[1] for a in lhs[0]), lhs[1] * rhs[1]
            if not any(lhs[0]):
                return tuple(b * lhs[1] for b in rhs[0]), lhs[1] * rhs[1]
    raise CompileError("rdu-tile", f"affine expression '{expr}' is not linear; floordiv/mod access patterns are not supported")


@dataclass(frozen=True)
class Access:
    """An operand's access pattern: one linear form per operand dimension."""

    forms: tuple[LinearForm, ...]

    @staticmethod
    def from_map(amap: AffineMap) -> Access:
        return Access(tuple(_linear(e, amap.num_dims) for e in amap.results))

    @property
    def dims(self) -> frozenset[int]:
        """Loop dims the operand depends on."""
        return frozenset(d for coeffs, _ in self.forms for d, c in enumerate(coeffs) if c)

    @property
    def is_projection(self) -> bool:
        """Every operand index is one loop index or a constant (a strided slice of the tensor)."""
        return all(sum(1 for c in coeffs if c) <= 1 and all(c in (0, 1) for c in coeffs) for coeffs, _ in self.forms)

    def extent(self, starts: Sequence[int], sizes: Sequence[int]) -> tuple[int, ...]:
        """Extent of the operand box a tile touches, per operand dim (elements).

        Coefficients are non-negative for the maps torch-mlir emits; the box is bounded by
        the index at the tile's first and last point.
        """
        out = []
        for coeffs, const in self.forms:
            lo = const + sum(c * s for c, s in zip(coeffs, starts, strict=True))
            hi = const + sum(c * (s + n - 1) for c, s, n in zip(coeffs, starts, sizes, strict=True))
            out.append(abs(hi - lo) + 1)
        return tuple(out)

    def origin(self, starts: Sequence[int]) -> tuple[int, ...]:
        return tuple(const + sum(c * s for c, s in zip(coeffs, starts, strict=True)) for coeffs, const in self.forms)


def tile_ranges(size: int, tile: int) -> list[tuple[int, int]]:
    """(start, length) of each tile along one loop of `size` with tiles of `tile`."""
    return [(s, min(tile, size - s)) for s in range(0, size, tile)]


def num_tiles(domain: Sequence[int], tile: Sequence[int]) -> int:
    return math.prod(math.ceil(d / t) for d, t in zip(domain, tile, strict=True))


def tiles(domain: Sequence[int], tile: Sequence[int], order: Sequence[int]) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Every tile as (starts, sizes), looping over dims in `order` (outermost first)."""
    per_dim = [tile_ranges(d, t) for d, t in zip(domain, tile, strict=True)]
    rank = len(domain)
    for combo in itertools.product(*(per_dim[d] for d in order)):
        starts, sizes = [0] * rank, [1] * rank
        for d, (s, n) in zip(order, combo, strict=True):
            starts[d], sizes[d] = s, n
        yield tuple(starts), tuple(sizes)


def tile_elements(access: Access, tile: Sequence[int]) -> int:
    """Elements of the operand box of a full (interior) tile: the buffer it needs."""
    return math.prod(access.extent([0] * len(tile), tile))


def traffic_elements(access: Access, domain: Sequence[int], tile: Sequence[int]) -> int:
    """Elements moved for the operand over the whole tiled loop nest (re-reads counted).

    A tile grid re-reads an operand once per tile of every loop it does not depend on:
    for a projection that is prod_{d in dims} D_d * prod_{d not in dims} ceil(D_d/T_d).
    Other patterns (conv windows, with halos) are summed tile by tile.
    """
    if access.is_projection:
        total = 1
        for d, (size, t) in enumerate(zip(domain, tile, strict=True)):
            total *= size if d in access.dims else math.ceil(size / t)
        return total
    order = list(range(len(domain)))
    return sum(math.prod(access.extent(s, n)) for s, n in tiles(domain, tile, order))
