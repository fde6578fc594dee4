"""rdu-fold-views: which reshapes are linear, and that folding keeps the numbers."""

from __future__ import annotations

import numpy as np
import pytest

from rdu_compiler.passes.rdu_fold_views import reshape_map


def _apply(amap, index):  # noqa: ANN001 - an xDSL AffineMap
    return tuple(int(v) for v in amap.eval(list(index), []))


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ((8, 64), (1, 8, 4, 16)),  # head split: expands, adds a unit dim
        ((1, 8, 64), (8, 64)),  # drops a unit dim
        ((4, 8, 16), (1, 4, 8, 16)),
        ((8,), (8, 1)),
        ((6, 10), (2, 3, 5, 2)),  # both dims split
    ],
)
def test_linear_reshapes_address_the_same_elements(src: tuple[int, ...], dst: tuple[int, ...]) -> None:
    amap = reshape_map(src, dst)
    assert amap is not None
    x = np.arange(int(np.prod(src))).reshape(src)
    y = x.reshape(dst)
    for index in np.ndindex(*dst):
        assert x[_apply(amap, index)] == y[index]


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ((1, 8, 4, 16), (8, 64)),  # merging heads needs floordiv/mod
        ((6, 10), (10, 6)),  # neither a split nor a merge
        ((4, 4), (2, 8)),
        ((4,), (5,)),  # not a reshape at all
    ],
)
def test_nonlinear_reshapes_stay_views(src: tuple[int, ...], dst: tuple[int, ...]) -> None:
    assert reshape_map(src, dst) is None


def test_groups_of_a_reshape() -> None:
    from rdu_compiler.passes.rdu_fold_views import _groups

    assert _groups((1, 16, 4, 16), (16, 64)) == [([1], [0]), ([2, 3], [1])]  # a merge
    assert _groups((8, 64), (1, 8, 4, 16)) == [([0], [1]), ([1], [2, 3])]  # a split
    assert _groups((6, 10), (10, 6)) is None  # neither


def test_folding_views_keeps_numbers_and_removes_transposes() -> None:
    import torch

    import rdu_compiler
    from rdu_compiler.bench.models import LayerShape, llama_layer

    model, inputs = llama_layer(LayerShape(hidden=64, heads=4, kv_heads=2, mlp=128, seq=8), dtype=torch.float32, device="cpu")
    with torch.no_grad():
        want = model(*inputs).numpy()
    program = rdu_compiler.compile(model, inputs, fabric="sn40l", opt_level=1)
    kinds = program.report["totals"]["kernel_kinds"]
    # q/k's head splits feed a concat (rotate-half), so those two stay copies; v's head
    # split became the PV matmul's access pattern, the head merge o_proj's (loop split)
    assert kinds.get("transpose", 0) == 2
    got = np.asarray(program.run(*inputs)[0])
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-5
