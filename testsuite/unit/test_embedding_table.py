"""The collisionless embedding table (issue 16): a cuckoo map with Monolith's semantics,
checked against a Python dict, and its training steps against PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rdu_compiler.embedding import (
    SGD,
    Adagrad,
    CollisionlessTable,
    CountingFilter,
    ProbabilisticFilter,
    TableFullError,
)
from rdu_compiler.embedding.hashed import HashedTable, collision_rate, lookup_collision_rate
from rdu_compiler.embedding.hashing import normal_rows

INT64 = st.integers(-(2**63), 2**63 - 1)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["assign", "lookup"]), st.lists(INT64, min_size=1, max_size=20, unique=True)),
                min_size=1, max_size=12))
def test_assign_and_lookup_agree_with_a_dict(ops: list[tuple[str, list[int]]]) -> None:
    table = CollisionlessTable(3, capacity=2, seed=7)  # tiny: forces cuckoo walks and index growth
    model: dict[int, np.ndarray] = {}
    for step, (op, ids) in enumerate(ops):
        arr = np.array(ids, dtype=np.int64)
        if op == "assign":
            rows = np.stack([np.full(3, float(i % 1000) + step, np.float32) for i in ids])
            table.assign(arr, rows, now=step)
            model.update({i: r for i, r in zip(ids, rows, strict=True)})
        got = table.lookup(arr)
        want = np.stack([model.get(i, np.zeros(3, np.float32)) for i in ids])
        np.testing.assert_array_equal(got, want)  # a miss is a zero row
        assert len(table) == len(model)  # and inserts nothing
    assert sorted(table.ids().view(np.int64).tolist()) == sorted(model)


def test_no_two_ids_share_a_row_even_when_their_hashes_agree_in_the_low_bits() -> None:
    ids = np.array([0, -1, 2**63 - 1, -(2**63), *[k << 40 for k in range(1, 2000)]], dtype=np.int64)
    table = CollisionlessTable(1, capacity=4)
    table.assign(ids, np.arange(len(ids), dtype=np.float32)[:, None], now=0)
    np.testing.assert_array_equal(table.lookup(ids)[:, 0], np.arange(len(ids)))
    assert len(set(table.find(ids).tolist())) == len(ids) and table.grows > 0


def test_float_ids_are_refused() -> None:
    with pytest.raises(TypeError, match="must be integers"):
        CollisionlessTable(2).lookup(np.array([1.0, 2.7]))


@pytest.mark.parametrize("optimizer", [SGD(lr=0.1), Adagrad(lr=0.1, initial_accumulator_value=0.1)])
def test_training_steps_equal_pytorch(optimizer: SGD | Adagrad) -> None:
    """K sparse steps on the table == K steps of torch.optim on an nn.Embedding of the same rows."""
    rng = np.random.default_rng(0)
    raw = rng.integers(-(2**62), 2**62, 50, dtype=np.int64)  # the raw IDs the model sees
    table = CollisionlessTable(4, capacity=8, optimizer=optimizer, seed=3)
    batches = [rng.integers(0, 50, 16) for _ in range(5)]
    emb = torch.nn.Embedding(50, 4)
    with torch.no_grad():  # eager starts from the row the table gives each ID when it inserts it
        emb.weight.copy_(torch.from_numpy(normal_rows(raw.view(np.uint64), 4, table.init_std, 3)))
    opt = torch.optim.SGD(emb.parameters(), lr=0.1) if isinstance(optimizer, SGD) else torch.optim.Adagrad(
        emb.parameters(), lr=0.1, initial_accumulator_value=0.1, eps=optimizer.eps)
    target = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    for step, idx in enumerate(batches):
        rows = torch.from_numpy(table.lookup(raw[idx]))
        present = torch.from_numpy(table.find(raw[idx]) >= 0)
        # a new ID reads zeros from the table (a miss) and is inserted, with its initial row, by
        # its gradient; the forward here uses that initial row, as eager does, so gradients agree
        rows = torch.where(present[:, None], rows, emb.weight[torch.from_numpy(idx)].detach())
        rows.requires_grad_(True)
        ((rows - target) ** 2).sum().backward()
        table.apply_gradients(raw[idx], rows.grad.numpy(), now=step)
        opt.zero_grad()
        ((emb(torch.from_numpy(idx)) - target) ** 2).sum().backward()
        opt.step()
    seen = np.unique(np.concatenate(batches))
    np.testing.assert_allclose(table.lookup(raw[seen]), emb.weight.detach().numpy()[seen], rtol=1e-5, atol=1e-6)


def test_counting_filter_admits_at_the_threshold_and_drops_the_rest() -> None:
    table = CollisionlessTable(2, admission=CountingFilter(1024, threshold=3), optimizer=SGD(lr=1.0))
    ids = np.array([5, 5, 9], dtype=np.int64)
    assert table.apply_gradients(ids, np.ones((3, 2)), now=0) == {"updated": 0, "admitted": 0, "rejected": 2}
    assert len(table) == 0 and not table.lookup(ids).any()
    assert table.apply_gradients(np.array([5, 9]), np.ones((2, 2)), now=1)["admitted"] == 1  # 5's third occurrence
    assert table.find(np.array([5, 9])).tolist()[1] == -1 and len(table) == 1
    for _ in range(2):
        table.apply_gradients(np.array([9]), np.ones((1, 2)), now=2)
    assert len(table) == 2


def test_probabilistic_filter_admits_a_share_q() -> None:
    f = ProbabilisticFilter(0.25, seed=0)
    assert abs(f.admit(np.arange(20000, dtype=np.uint64)).mean() - 0.25) < 0.02


def test_expiry_removes_only_stale_ids_and_reuses_their_rows() -> None:
    table = CollisionlessTable(2, capacity=4, expiry=10)
    table.assign(np.array([1, 2, 3]), np.ones((3, 2)), now=0)
    table.assign(np.array([2]), 2 * np.ones((1, 2)), now=8)
    assert table.expire(now=15) == 2
    assert table.find(np.array([1, 2, 3])).tolist()[0] == -1 and len(table) == 1
    np.testing.assert_array_equal(table.lookup(np.array([2])), [[2, 2]])
    before = len(table.rows)
    table.assign(np.array([4, 5]), np.zeros((2, 2)), now=16)
    assert len(table.rows) == before  # the expired rows were reused


def test_max_rows_refuses_before_writing() -> None:
    table = CollisionlessTable(2, capacity=2, max_rows=3)
    table.assign(np.array([1, 2]), np.ones((2, 2)), now=0)
    with pytest.raises(TableFullError, match="max_rows=3"):
        table.assign(np.array([3, 4]), np.ones((2, 2)), now=1)
    assert len(table) == 2 and table.find(np.array([3])).tolist() == [-1]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    table = CollisionlessTable(3, optimizer=Adagrad(lr=0.5), expiry=100, seed=11)
    ids = np.array([-7, 0, 2**40, 13], dtype=np.int64)
    table.apply_gradients(ids, np.arange(12, dtype=np.float32).reshape(4, 3), now=42)
    table.save(tmp_path / "t.safetensors")
    back = CollisionlessTable.load(tmp_path / "t.safetensors")
    np.testing.assert_array_equal(back.lookup(ids), table.lookup(ids))
    assert back.expiry == 100 and isinstance(back.optimizer, Adagrad) and back.optimizer.lr == 0.5
    np.testing.assert_array_equal(back.state[back.find(ids)], table.state[table.find(ids)])
    np.testing.assert_array_equal(back.stamps[back.find(ids)], [42] * 4)
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(2, np.float32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a saved CollisionlessTable"):
        CollisionlessTable.load(tmp_path / "other.safetensors")


def test_touched_since_is_what_a_serving_copy_needs() -> None:
    table = CollisionlessTable(1)
    table.assign(np.array([1, 2, 3]), np.zeros((3, 1)), now=0)
    table.apply_gradients(np.array([2, 4]), np.ones((2, 1)), now=5)
    ids, rows = table.touched_since(5)
    assert sorted(ids.tolist()) == [2, 4] and rows.shape == (2, 1)


def test_hashed_table_collides_as_the_birthday_bound_says() -> None:
    ids = np.random.default_rng(0).integers(0, 2**62, 20000, dtype=np.int64)
    for rows in (20000, 200000):
        expected = 1 - (1 - 1 / rows) ** (len(np.unique(ids)) - 1)
        assert abs(collision_rate(ids, rows) - expected) < 0.02
    stream = np.array([1, 1, 1, 1, 2, 3], dtype=np.int64)
    assert lookup_collision_rate(stream, 1) == 1.0 and lookup_collision_rate(stream, 10**12) == 0.0
    assert lookup_collision_rate(np.array([5, 5, 5]), 1) == 0.0  # one ID alone shares with nobody
    h = HashedTable(2, 4)
    assert len(set(h.row_of(np.arange(100)).tolist())) <= 4  # 100 IDs, 4 rows: they share
