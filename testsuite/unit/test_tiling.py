"""Tile geometry over plain data (`rdu_compiler.kernel.access`), the PCU split of rdu-allocate,
the tile choice of rdu-tile, and the hex float rewrite of `rdu_compiler.ir`.

The closed forms are checked against brute force: every point of every tile enumerated,
the box of operand indices it touches measured directly.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence

import numpy as np
import pytest
from xdsl.dialects.builtin import AffineMapAttr
from xdsl.ir.affine import AffineConstantExpr, AffineDimExpr, AffineMap
from xdsl.parser import Parser

from rdu_compiler.errors import CompileError
from rdu_compiler.ir import fix_hex_float_literals, make_context, parse_module
from rdu_compiler.kernel.access import (
    Access,
    num_tiles,
    tile_elements,
    tile_ranges,
    tiles,
    traffic_elements,
)
from rdu_compiler.kernel.traffic import DEPTH, operand_tile_bytes
from rdu_compiler.passes.common import kernels
from rdu_compiler.passes.rdu_allocate import split_pcus
from rdu_compiler.passes.rdu_tile import choose_tile
from rdu_compiler.pipeline import run_pipeline

d0, d1, d2, d3 = (AffineDimExpr(i) for i in range(4))


def amap(num_dims: int, *results: object) -> AffineMap:
    return AffineMap(num_dims, 0, tuple(results))  # type: ignore[arg-type]


def parse_map(text: str) -> AffineMap:
    attr = Parser(make_context(), text).parse_attribute()
    assert isinstance(attr, AffineMapAttr)
    return attr.data


# ---------------------------------------------------------------------------- Access


def test_from_map_projection() -> None:
    acc = Access.from_map(amap(3, d0, d2))
    assert acc.forms == (((1, 0, 0), 0), ((0, 0, 1), 0))
    assert acc.dims == frozenset({0, 2})
    assert acc.is_projection


def test_from_map_transpose_and_constant() -> None:
    acc = Access.from_map(amap(2, d1, AffineConstantExpr(3), d0))
    assert acc.forms == (((0, 1), 0), ((0, 0), 3), ((1, 0), 0))
    assert acc.dims == frozenset({0, 1})
    assert acc.is_projection


def test_from_map_conv_window() -> None:
    # (oh * 2 + kh + 1): a strided window with an offset.
    acc = Access.from_map(amap(2, d0 * 2 + d1 + AffineConstantExpr(1)))
    assert acc.forms == (((2, 1), 1),)
    assert not acc.is_projection
    assert acc.dims == frozenset({0, 1})
    assert not Access.from_map(amap(2, d0 + d1)).is_projection


def test_from_map_scalar_operand() -> None:
    acc = Access.from_map(amap(2))
    assert acc.forms == ()
    assert acc.dims == frozenset()
    assert acc.is_projection


def test_from_map_parsed_text() -> None:
    acc = Access.from_map(parse_map("affine_map<(d0, d1, d2, d3) -> (d0, d2 + d3, 3 * d1 + 2)>"))
    assert acc.forms == (((1, 0, 0, 0), 0), ((0, 0, 1, 1), 0), ((0, 3, 0, 0), 2))


def test_from_map_floordiv_is_refused() -> None:
    with pytest.raises(CompileError, match="not linear"):
        Access.from_map(parse_map("affine_map<(d0, d1) -> (d0 floordiv 2, d1)>"))


def test_extent_and_origin() -> None:
    acc = Access.from_map(amap(3, d0, d1 * 2 + d2))
    assert acc.extent((0, 0, 0), (4, 3, 2)) == (4, 2 * 2 + 1 + 1)
    assert acc.extent((8, 5, 1), (1, 1, 1)) == (1, 1)
    assert acc.origin((8, 5, 1)) == (8, 11)
    # A dim the operand does not depend on does not widen its box.
    assert Access.from_map(amap(3, d2, d0)).extent((0, 0, 0), (5, 7, 3)) == (3, 5)


# ---------------------------------------------------------------------------- tile grids


def test_tile_ranges_cover_the_loop_once() -> None:
    assert tile_ranges(10, 4) == [(0, 4), (4, 4), (8, 2)]
    assert tile_ranges(8, 8) == [(0, 8)]
    assert tile_ranges(3, 5) == [(0, 3)]
    for size, t in [(1, 1), (17, 3), (64, 16), (100, 7)]:
        covered = [i for s, n in tile_ranges(size, t) for i in range(s, s + n)]
        assert covered == list(range(size))


def test_tiles_order_and_count() -> None:
    domain, tile = (5, 4, 6), (2, 4, 4)
    grid = list(tiles(domain, tile, [0, 1, 2]))
    assert len(grid) == num_tiles(domain, tile) == 3 * 1 * 2
    assert grid[0] == ((0, 0, 0), (2, 4, 4))
    assert grid[1] == ((0, 0, 4), (2, 4, 2))  # innermost loop (dim 2) varies fastest
    assert grid[-1] == ((4, 0, 4), (1, 4, 2))
    points = {p for s, n in grid for p in itertools.product(*(range(a, a + b) for a, b in zip(s, n, strict=True)))}
    assert len(points) == math.prod(domain)
    # Reduction loops last: the kernel executor's order keeps a parallel tile's partial sums together.
    red_last = list(tiles(domain, tile, [0, 1, 2]))
    red_first = list(tiles(domain, tile, [2, 0, 1]))
    assert sorted(red_last) == sorted(red_first)
    assert red_first[1][0][2] == 0 and red_first[1][0][0] == 2


def brute_force_box(access: Access, domain: Sequence[int], tile: Sequence[int]) -> int:
    """Per tile, enumerate every point, take the bounding box of the indices it touches."""
    total = 0
    for starts, sizes in tiles(domain, tile, list(range(len(domain)))):
        indices = [
            [const + sum(c * i for c, i in zip(coeffs, point, strict=True)) for coeffs, const in access.forms]
            for point in itertools.product(*(range(s, s + n) for s, n in zip(starts, sizes, strict=True)))
        ]
        arr = np.asarray(indices).reshape(len(indices), len(access.forms))
        total += int(np.prod(arr.max(axis=0) - arr.min(axis=0) + 1)) if access.forms else 1
    return total


def brute_force_distinct(access: Access, domain: Sequence[int], tile: Sequence[int]) -> int:
    """Per tile, the number of distinct operand elements it touches."""
    total = 0
    for starts, sizes in tiles(domain, tile, list(range(len(domain)))):
        touched = {
            tuple(const + sum(c * i for c, i in zip(coeffs, point, strict=True)) for coeffs, const in access.forms)
            for point in itertools.product(*(range(s, s + n) for s, n in zip(starts, sizes, strict=True)))
        }
        total += len(touched)
    return total


TRAFFIC_CASES = [
    # (map, domain, tile)
    (amap(3, d0, d2), (8, 6, 10), (4, 3, 4)),  # matmul A: re-read per N tile
    (amap(3, d2, d1), (8, 6, 10), (4, 3, 4)),  # matmul B: re-read per M tile
    (amap(3, d0, d1), (8, 6, 10), (4, 3, 4)),  # matmul C
    (amap(3, d1, d0), (5, 7, 3), (2, 7, 3)),  # transpose
    (amap(2, d0, AffineConstantExpr(2)), (9, 4), (4, 2)),  # a constant index
    (amap(2), (9, 4), (4, 3)),  # a scalar: one register load per tile
    (amap(2, d0 + d1), (10, 3), (4, 3)),  # conv-like window, halo re-read per tile
    (amap(2, d0 + d1), (10, 3), (3, 1)),
    (amap(4, d0, d1 + d2, d3), (2, 12, 3, 5), (1, 5, 2, 5)),  # 1-D conv input (N, oh + kh, C)
    (amap(4, d0, d1 * 2 + d2, d3), (2, 6, 3, 4), (2, 4, 3, 2)),  # stride 2
]


@pytest.mark.parametrize(("m", "domain", "tile"), TRAFFIC_CASES, ids=[str(i) for i in range(len(TRAFFIC_CASES))])
def test_traffic_elements_equals_brute_force(m: AffineMap, domain: tuple[int, ...], tile: tuple[int, ...]) -> None:
    access = Access.from_map(m)
    assert traffic_elements(access, domain, tile) == brute_force_box(access, domain, tile)


@pytest.mark.parametrize(("m", "domain", "tile"), [c for c in TRAFFIC_CASES if not any(c2 > 1 for f in Access.from_map(c[0]).forms for c2 in f[0])])
def test_unit_stride_traffic_is_the_distinct_elements(m: AffineMap, domain: tuple[int, ...], tile: tuple[int, ...]) -> None:
    """With unit coefficients a tile's box has no holes: its traffic is what it touches."""
    access = Access.from_map(m)
    assert traffic_elements(access, domain, tile) == brute_force_distinct(access, domain, tile)


def test_projection_closed_form() -> None:
    # A(M, K) in a (M, N, K) matmul: read whole once per N tile.
    access = Access.from_map(amap(3, d0, d2))
    assert traffic_elements(access, (64, 48, 512), (64, 16, 128)) == 64 * 512 * 3
    assert traffic_elements(access, (64, 48, 512), (64, 48, 512)) == 64 * 512
    # Partial tiles round the re-read count up.
    assert traffic_elements(access, (64, 50, 512), (64, 16, 512)) == 64 * 512 * 4


def test_random_projections_match_brute_force() -> None:
    rng = random.Random(0)
    for _ in range(40):
        rank = rng.randint(1, 3)
        domain = [rng.randint(1, 7) for _ in range(rank)]
        tile = [rng.randint(1, d) for d in domain]
        dims = rng.sample(range(rank), rng.randint(0, rank))
        access = Access.from_map(amap(rank, *(AffineDimExpr(d) for d in dims)))
        assert traffic_elements(access, domain, tile) == brute_force_box(access, domain, tile)


def test_tile_elements_is_the_interior_box() -> None:
    assert tile_elements(Access.from_map(amap(3, d0, d2)), (4, 3, 8)) == 32
    assert tile_elements(Access.from_map(amap(2, d0 + d1)), (4, 3)) == 6
    assert tile_elements(Access.from_map(amap(2)), (4, 3)) == 1


# ---------------------------------------------------------------------------- split_pcus


def test_split_pcus_proportional() -> None:
    alloc = split_pcus([100, 300], [1000, 1000], 8)
    assert alloc == [2, 6]
    alloc = split_pcus([1, 1, 1, 1], [100] * 4, 40)
    assert alloc == [10, 10, 10, 10]


def test_split_pcus_every_kernel_gets_one() -> None:
    alloc = split_pcus([0, 10**9, 0], [100, 100, 100], 8)
    assert alloc[0] >= 1 and alloc[2] >= 1
    assert alloc == [1, 6, 1]


def test_split_pcus_caps_and_redistributes() -> None:
    # The heavy kernel can use 2 PCUs only: the rest go to the light one.
    assert split_pcus([1000, 1], [2, 100], 10) == [2, 8]
    # Everyone capped: PCUs are left unused.
    assert split_pcus([5, 5], [2, 3], 64) == [2, 3]


def test_split_pcus_no_flops() -> None:
    assert split_pcus([0, 0, 0], [10, 10, 10], 8) == [1, 1, 1]


def test_split_pcus_too_many_kernels() -> None:
    with pytest.raises(ValueError, match="3 kernels"):
        split_pcus([1, 1, 1], [1, 1, 1], 2)


def test_split_pcus_properties() -> None:
    rng = random.Random(1)
    for _ in range(300):
        n = rng.randint(1, 12)
        total = rng.randint(n, 80)
        flops = [rng.choice([0, rng.randint(1, 10**6)]) for _ in range(n)]
        limits = [rng.randint(1, 20) for _ in range(n)]
        alloc = split_pcus(flops, limits, total)
        assert len(alloc) == n
        assert sum(alloc) <= total
        assert all(1 <= a <= max(1, lim) for a, lim in zip(alloc, limits, strict=True))
        heavy = [i for i in range(n) if flops[i] > 0]
        if heavy:
            # Nothing left over while a kernel with work could take more.
            assert sum(alloc) == total or all(alloc[i] == limits[i] for i in heavy)
        # More FLOPs never gets fewer PCUs, unless its cap stops it.
        for i, j in itertools.permutations(range(n), 2):
            if flops[i] > flops[j] and alloc[i] < limits[i]:
                assert alloc[i] >= alloc[j] - 1


# ---------------------------------------------------------------------------- choose_tile / rdu-tile

BIG_MATMUL = """
func.func @big_matmul(%a: tensor<32x512xf32>, %b: tensor<512x16xf32>, %c: tensor<32x16xf32>) -> tensor<32x16xf32> {
  %m = linalg.matmul ins(%a, %b : tensor<32x512xf32>, tensor<512x16xf32>) outs(%c : tensor<32x16xf32>) -> tensor<32x16xf32>
  return %m : tensor<32x16xf32>
}
"""

BIG_MAP = """
func.func @map(%x: tensor<256x300xf32>) -> tensor<256x300xf32> {
  %e = tensor.empty() : tensor<256x300xf32>
  %r = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%x : tensor<256x300xf32>) outs(%e : tensor<256x300xf32>) {
  ^bb0(%in: f32, %out: f32):
    %m = arith.negf %in : f32
    linalg.yield %m : f32
  } -> tensor<256x300xf32>
  return %r : tensor<256x300xf32>
}
"""


def tiled(text: str, spec: str) -> list[tuple[list[int], list[int]]]:
    module = parse_module(text)
    run_pipeline(module, ["rdu-convert-linalg", spec])
    return [(list(k.domain_sizes), list(k.tile_sizes)) for k in kernels(module)]


def test_rdu_tile_halves_the_reduction_of_the_worst_operand() -> None:
    # tiny: 8 PMUs of 16 KiB, 3 buffers -> 2 PMUs each -> 16 KiB per tile (double-buffered).
    assert tiled(BIG_MATMUL, "rdu-tile{fabric=tiny}") == [([32, 16, 512], [32, 16, 128])]
    assert tiled(BIG_MATMUL, "rdu-tile{fabric=tiny max_buffer_pmus=1}") == [([32, 16, 512], [32, 16, 64])]
    assert tiled(BIG_MATMUL, "rdu-tile{fabric=sn40l}") == [([32, 16, 512], [32, 16, 512])]


def test_rdu_tile_every_buffer_fits() -> None:
    module = parse_module(BIG_MAP)
    run_pipeline(module, ["rdu-convert-linalg", "rdu-tile{fabric=tiny}"])
    (k,) = kernels(module)
    # Two buffers: 4 PMUs each -> a tile may take 4 * 16384 / DEPTH bytes.
    budget = 4 * 16384 // DEPTH
    sizes = operand_tile_bytes(k, k.tile_sizes)
    assert max(sizes) <= budget
    # The largest such tile: doubling any loop would overflow (or exceed the domain).
    for d in range(2):
        bigger = list(k.tile_sizes)
        if bigger[d] >= k.domain_sizes[d]:
            continue
        bigger[d] = min(k.domain_sizes[d], bigger[d] * 2)
        assert max(operand_tile_bytes(k, bigger)) > budget


def test_choose_tile_direct() -> None:
    module = parse_module(BIG_MATMUL)
    run_pipeline(module, ["rdu-convert-linalg"])
    (k,) = kernels(module)
    assert choose_tile(k, 10**9) == [32, 16, 512]
    tile = choose_tile(k, 2 * 4096)
    assert max(operand_tile_bytes(k, tile)) <= 4096
    assert all(1 <= t <= d for t, d in zip(tile, k.domain_sizes, strict=True))


def test_choose_tile_refuses_when_nothing_fits() -> None:
    module = parse_module(BIG_MATMUL)
    run_pipeline(module, ["rdu-convert-linalg"])
    (k,) = kernels(module)
    with pytest.raises(CompileError, match="smallest tile"):
        choose_tile(k, 4)  # 2 B per tile: not even one f32


# ---------------------------------------------------------------------------- hex float literals


def test_fix_hex_leaves_other_text_alone() -> None:
    text = "%c = arith.constant dense<1.0> : tensor<4xf32>"
    assert fix_hex_float_literals(text) == text
    ints = "%c = arith.constant dense<0xFF> : tensor<4xi8>"
    assert fix_hex_float_literals(ints) == ints
    scalar = "%c = arith.constant 0xFF800000 : f32"
    assert fix_hex_float_literals(scalar) == scalar
    quoted = '%c = arith.constant dense<"0x0000807F"> : tensor<1xf32>'
    assert fix_hex_float_literals(quoted) == quoted


def test_fix_hex_splat() -> None:
    out = fix_hex_float_literals("%c = arith.constant dense<0xFF800000> : tensor<2x3xf32>")
    assert out == '%c = arith.constant dense<"0x000080FF"> : tensor<2x3xf32>'


def test_fix_hex_list_mixes_hex_and_decimal() -> None:
    out = fix_hex_float_literals("dense<[0xFF800000, 1.0, -2.5, 0x7FC00000]> : tensor<4xf32>")
    data = np.asarray([-np.inf, 1.0, -2.5, np.nan], np.float32)
    data[3] = np.frombuffer(bytes.fromhex("0000C07F"), np.float32)[0]
    assert out == f'dense<"0x{data.tobytes().hex().upper()}"> : tensor<4xf32>'


def _constant_values(text: str) -> np.ndarray:
    module = parse_module(f"func.func @f() -> {text.split(' : ')[1]} {{\n  %c = arith.constant {text}\n  return %c : {text.split(' : ')[1]}\n}}")
    op = next(o for o in module.walk() if o.name == "arith.constant")
    return np.asarray(op.value.get_values())  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("dense<0xFF800000> : tensor<3xf32>", [-np.inf] * 3),
        ("dense<[0xFF800000, 0x7F800000, 0x3F800000]> : tensor<3xf32>", [-np.inf, np.inf, 1.0]),
        ("dense<0xFFF0000000000000> : tensor<2xf64>", [-np.inf] * 2),
        ("dense<0xFC00> : tensor<2xf16>", [-np.inf] * 2),
        ("dense<[0xFF80, 0x3F80]> : tensor<2xbf16>", [-np.inf, 1.0]),
        ("dense<[[0xFF800000, 0.5], [2.0, 0xFF800000]]> : tensor<2x2xf32>", [-np.inf, 0.5, 2.0, -np.inf]),
    ],
)
def test_hex_float_constants_parse_as_bits(text: str, want: list[float]) -> None:
    values = _constant_values(text).astype(np.float64).ravel()
    np.testing.assert_array_equal(values, np.asarray(want))
