"""rdu.all_reduce / rdu.all_gather / rdu.shard: syntax round trip, verifiers (group size
against the node's sockets, shapes), and the numpy layout helpers the emulator uses."""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.utils.exceptions import VerifyException

from rdu_compiler.dialects.rdu.collectives import gather_shards, shard_of
from rdu_compiler.ir import parse_module

_OK = """builtin.module attributes {rdu.fabric = "sn40l-node8"} {
  func.func @main(%x: tensor<16x64xf32>, %y: tensor<16x192xf32>) -> (tensor<16x64xf32>, tensor<16x384xf32>, tensor<16x96xf32>) {
    %s = rdu.all_reduce %x group 2 : tensor<16x64xf32> -> tensor<16x64xf32>
    %g = rdu.all_gather %y dim 1 group 2 blocks 3 : tensor<16x192xf32> -> tensor<16x384xf32>
    %h = rdu.shard %y dim 1 group 2 : tensor<16x192xf32> -> tensor<16x96xf32>
    func.return %s, %g, %h : tensor<16x64xf32>, tensor<16x384xf32>, tensor<16x96xf32>
  }
}"""


def test_round_trip() -> None:
    mod = parse_module(_OK, "rdu")
    mod.verify()
    assert str(parse_module(str(mod), "rdu")) == str(mod)
    assert "blocks 3" in str(mod) and "rdu.shard %" in str(mod)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("all_reduce %x group 2", "all_reduce %x group 1", "spans >= 2 sockets"),
        ("all_reduce %x group 2", "all_reduce %x group 3", "does not divide the 8 sockets"),
        ("dim 1 group 2 blocks 3 : tensor<16x192xf32> -> tensor<16x384xf32>",
         "dim 1 group 2 blocks 3 : tensor<16x192xf32> -> tensor<16x383xf32>", "is the other's x 2"),
        ("dim 1 group 2 blocks 3", "dim 1 group 2 blocks 5", "does not divide dim 1"),
        ("rdu.shard %y dim 1 group 2", "rdu.shard %y dim 2 group 2", "dim 2 of rank-2"),
    ],
)
def test_verifier_refuses(old: str, new: str, message: str) -> None:
    text = _OK.replace(old, new)
    if "16x383" in new:
        text = text.replace("tensor<16x384xf32>", "tensor<16x383xf32>")
    with pytest.raises(VerifyException, match=message):
        parse_module(text, "rdu").verify()


def test_all_reduce_shape_must_match() -> None:
    text = _OK.replace("all_reduce %x group 2 : tensor<16x64xf32> -> tensor<16x64xf32>",
                       "all_reduce %x group 2 : tensor<16x64xf32> -> tensor<16x32xf32>")
    text = text.replace("-> (tensor<16x64xf32>,", "-> (tensor<16x32xf32>,").replace(
        "return %s, %g, %h : tensor<16x64xf32>", "return %s, %g, %h : tensor<16x32xf32>")
    with pytest.raises(VerifyException, match="keeps the shape"):
        parse_module(text, "rdu").verify()


@pytest.mark.parametrize(("group", "blocks"), [(2, 1), (2, 3), (4, 3), (3, 2)])
def test_shard_and_gather_are_inverse(group: int, blocks: int) -> None:
    x = np.arange(5 * group * blocks * 4 * 3, dtype=np.float32).reshape(5, group * blocks * 4, 3)
    parts = [shard_of(x, 1, group, blocks, r) for r in range(group)]
    assert all(p.shape == (5, blocks * 4, 3) for p in parts)
    np.testing.assert_array_equal(gather_shards(parts, 1, blocks), x)
    # blocks = 3 of [q | k | v]: shard r holds q's, k's and v's r-th block
    if blocks == 3 and group == 2:
        n = x.shape[1] // 6
        np.testing.assert_array_equal(parts[1][:, :n], x[:, n:2 * n])
        np.testing.assert_array_equal(parts[1][:, n:2 * n], x[:, 3 * n:4 * n])


def test_shard_over_a_subgroup() -> None:
    """`ways`: the shard is one of `ways` distinct ones (a refine of a 2-way shard to 4)."""
    text = _OK.replace("rdu.shard %y dim 1 group 2 :", "rdu.shard %y dim 1 group 2 ways 4 :")
    mod = parse_module(text, "rdu")
    mod.verify()
    assert "group 2 ways 4" in str(mod)
    with pytest.raises(VerifyException, match="not a multiple of group"):
        parse_module(_OK.replace("rdu.shard %y dim 1 group 2 :", "rdu.shard %y dim 1 group 2 ways 3 :"), "rdu").verify()
