"""Online training on the emulator (issue 16): a training step compiled from PyTorch, the
CollisionlessTable trained sparsely, admission and expiry, touched-row sync. Every number is
compared with eager PyTorch doing the same steps (`train.eager`), fp32, rel L2 <= 1e-5."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rdu_compiler.embedding import SGD, Adagrad, CollisionlessTable, CountingFilter
from rdu_compiler.embedding.hashing import normal_rows
from rdu_compiler.train import (
    Batch,
    CompiledTrainStep,
    EagerOnlineTrainer,
    OnlineTrainer,
    TrainingError,
)
from rdu_compiler.train.stream import zipf_stream

B, F, DIM, D = 16, 3, 4, 5
TOL = 1e-5
OPTIMIZERS = {"sgd": SGD(lr=0.5), "adagrad": Adagrad(lr=0.3, initial_accumulator_value=0.1)}


class Tower(nn.Module):
    """A bottom layer on the dense features, concatenated with the rows, a ReLU MLP: a logit."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.bottom = nn.Linear(D, DIM)
        self.top1 = nn.Linear(F * DIM + DIM, 16)
        self.top2 = nn.Linear(16, 1)

    def forward(self, rows: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bottom(dense))
        return self.top2(torch.relu(self.top1(torch.cat([rows.flatten(1), x], 1)))).squeeze(1)


def rel(a: object, b: object) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


@pytest.fixture(scope="module")
def steps() -> dict[str, CompiledTrainStep]:
    """One compiled step per optimizer, shared by the tests (the compile is the slow part)."""
    b = zipf_stream(1, B, F, D, vocab=40)[0]
    rows = torch.zeros(B, F, DIM)
    return {k: CompiledTrainStep(Tower(), "bce", opt, rows, torch.from_numpy(b.dense), torch.from_numpy(b.labels))
            for k, opt in OPTIMIZERS.items()}


def _pair(steps: dict[str, CompiledTrainStep], opt: str, **table_kw: object) -> tuple[OnlineTrainer, EagerOnlineTrainer]:
    table = CollisionlessTable(DIM, capacity=64, optimizer=OPTIMIZERS[opt], init_std=0.1, seed=7, **table_kw)  # type: ignore[arg-type]
    eager = EagerOnlineTrainer(Tower(), table, capacity=512)  # copies the fresh table's configuration
    trainer = OnlineTrainer(Tower(), table, sync_every=2, compiled=steps[opt])
    return trainer, eager


def _same_state(trainer: OnlineTrainer, eager: EagerOnlineTrainer) -> None:
    for got, want in zip(trainer.params, eager.params(), strict=True):
        assert rel(got, want) <= TOL
    ids = eager.ids()
    np.testing.assert_array_equal(np.sort(trainer.table.ids()), ids)  # the same IDs present
    got, want = trainer.table.lookup(ids), eager.rows_of(ids)
    assert rel(got, want) <= TOL
    init = normal_rows(ids, DIM, trainer.table.init_std, trainer.table.seed)  # what training wrote, alone
    assert rel(got - init, want - init) <= TOL
    want_state = eager.state_of(ids)
    if want_state is not None:
        assert trainer.table.state is not None
        assert rel(trainer.table.state[trainer.table.find(ids)], want_state) <= TOL


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_compiled_training_equals_eager_after_k_steps(steps: dict[str, CompiledTrainStep], opt: str) -> None:
    trainer, eager = _pair(steps, opt)
    start = [p.clone() for p in trainer.params]
    state_rows = OPTIMIZERS[opt].state_per_row
    for batch in zipf_stream(8, B, F, D, vocab=40, seed=1):  # Zipf: repeated IDs inside a batch (HashReduce)
        rec = trainer.step(batch)
        want = eager.step(batch.ids, batch.dense, batch.labels, batch.now)
        assert abs(rec.loss - want) <= TOL * abs(want)
        # the modelled sparse update: each distinct present ID's row (16 B, one 64 B HBM burst)
        # and its optimizer state rows, read and written
        touched = len(np.unique(batch.ids))
        assert rec.update_bytes == 2 * touched * (1 + state_rows) * 64
        assert rec.update_s == pytest.approx(rec.update_bytes / 1.8e12) and rec.modelled_step_s > 0
    assert trainer.update_tier == "hbm"
    _same_state(trainer, eager)
    moved = min(rel(p, s) for p, s in zip(trainer.params, start, strict=True))
    assert moved > 100 * TOL  # every dense parameter trained: the comparison above is not vacuous
    assert len(trainer.table) > 40  # IDs of all three features were inserted


def test_admission_and_expiry_during_training(steps: dict[str, CompiledTrainStep]) -> None:
    trainer, eager = _pair(steps, "adagrad", expiry=2, admission=CountingFilter(4096, threshold=2))
    stream = zipf_stream(10, B, F, D, vocab=60, zipf=1.3, seed=2)
    for batch in stream:
        trainer.step(batch)
        eager.step(batch.ids, batch.dense, batch.labels, batch.now)
        np.testing.assert_array_equal(np.sort(trainer.table.ids()), eager.ids())
    hist = trainer.history
    assert sum(r.rejected for r in hist) > 0 and sum(r.admitted for r in hist) > 0
    assert sum(r.expired for r in hist) > 0
    _, counts = np.unique(stream[0].ids, return_counts=True)
    assert hist[0].admitted == int((counts >= 2).sum())  # threshold 2: IDs seen twice in the first batch
    _same_state(trainer, eager)


def test_sync_sends_only_the_touched_rows(steps: dict[str, CompiledTrainStep]) -> None:
    trainer, _ = _pair(steps, "sgd", expiry=3)
    stream = zipf_stream(6, B, F, D, vocab=200, zipf=1.2, seed=3)
    row_bytes = 8 + 4 * DIM + 8
    for i, batch in enumerate(stream):
        trainer.step(batch)
        if i % 2 == 0:  # between syncs the serving copy keeps the old rows
            assert not trainer.history[-1].synced
            assert rel(trainer.serving.lookup(batch.ids), trainer.table.lookup(batch.ids)) > 0
            continue
        rec = trainer.syncs[-1]
        touched = np.unique(np.concatenate([stream[i - 1].ids.ravel(), batch.ids.ravel()]).view(np.uint64))
        present = touched[trainer.table.find(touched) >= 0]
        assert rec.rows == len(present) and rec.row_bytes == len(present) * row_bytes
        assert rec.full_row_bytes == len(trainer.table) * row_bytes
        assert rec.dense_bytes == 4 * sum(p.numel() for p in Tower().parameters())
        ids = np.sort(trainer.table.ids())
        np.testing.assert_array_equal(np.sort(trainer.serving.table.ids()), ids)  # expired IDs left both
        np.testing.assert_array_equal(trainer.serving.lookup(ids), trainer.table.lookup(ids))
    assert trainer.syncs[-1].row_bytes < trainer.syncs[-1].full_row_bytes  # cold rows were not re-sent
    assert sum(r.expired for r in trainer.history) > 0


def test_bad_batches_are_refused(steps: dict[str, CompiledTrainStep]) -> None:
    trainer, _ = _pair(steps, "sgd")
    good = zipf_stream(2, B, F, D, vocab=40)
    trainer.step(good[0])
    bad = [
        (Batch(good[1].ids.astype(np.float32), good[1].dense, good[1].labels), "integers"),
        (Batch(good[1].ids[:8], good[1].dense[:8], good[1].labels[:8]), "compiled for ids"),
        (Batch(good[1].ids, good[1].dense, good[1].labels[:5]), "one value per sample"),
        (Batch(good[1].ids.ravel(), good[1].dense, good[1].labels), r"\(B, F\)"),
        (Batch(good[1].ids, good[1].dense[:, :1], good[1].labels), "compiled for ids"),
        (Batch(good[1].ids, good[1].dense, good[1].labels, now=-1), "clock went back"),
    ]
    table_before = trainer.table.rows.copy()
    for batch, message in bad:
        with pytest.raises(TrainingError, match=message):
            trainer.step(batch)
    np.testing.assert_array_equal(trainer.table.rows, table_before)  # nothing changed
    assert trainer.steps == 1


def test_bad_models_and_settings_are_refused(steps: dict[str, CompiledTrainStep]) -> None:
    rows, dense, labels = torch.zeros(B, F, DIM), torch.zeros(B, D), torch.zeros(B)

    class NoParams(nn.Module):
        def forward(self, r: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
            return r.sum((1, 2))

    class TwoOutputs(Tower):
        def forward(self, r: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
            return torch.stack([super().forward(r, d)] * 2, 1)

    with pytest.raises(TrainingError, match="no parameters"):
        CompiledTrainStep(NoParams(), "bce", SGD(), rows, dense, labels)
    with pytest.raises(TrainingError, match="one value per sample"):
        CompiledTrainStep(TwoOutputs(), "bce", SGD(), rows, dense, labels)
    with pytest.raises(TrainingError, match="unknown loss"):
        CompiledTrainStep(Tower(), "hinge", SGD(), rows, dense, labels)
    table = CollisionlessTable(DIM, optimizer=SGD(lr=0.5))
    with pytest.raises(TrainingError, match="update_tier must be 'hbm', 'ddr' or None"):
        OnlineTrainer(Tower(), table, update_tier="sram")
    assert OnlineTrainer(Tower(), table, update_tier="ddr").update_tier == "ddr"
    with pytest.raises(TrainingError, match="sync_every"):
        OnlineTrainer(Tower(), table, sync_every=0)
    with pytest.raises(TrainingError, match="compiled step was built for"):
        OnlineTrainer(Tower(), table, Adagrad(lr=0.3), compiled=steps["sgd"])


def test_a_full_table_leaves_the_trainer_as_it_was(steps: dict[str, CompiledTrainStep]) -> None:
    from rdu_compiler.embedding import TableFullError

    trainer, _ = _pair(steps, "sgd", max_rows=10)
    params = [p.clone() for p in trainer.params]
    with pytest.raises(TableFullError, match="max_rows=10"):
        trainer.step(zipf_stream(1, B, F, D, vocab=40)[0])  # 3 features x 16 samples: more than 10 IDs
    assert len(trainer.table) == 0 and trainer.steps == 0
    assert all(torch.equal(p, q) for p, q in zip(trainer.params, params, strict=True))


def test_the_serving_copy_predicts_with_what_was_synced(steps: dict[str, CompiledTrainStep]) -> None:
    trainer, _ = _pair(steps, "adagrad")
    stream = zipf_stream(3, B, F, D, vocab=40, seed=4)
    with pytest.raises(TrainingError, match="no synced parameters"):
        trainer.serving.predict(stream[0].ids, stream[0].dense)
    trainer.step(stream[0])
    trainer.step(stream[1])  # sync_every=2: synced here
    probe = stream[2]
    got = trainer.serving.predict(probe.ids, probe.dense)  # compiled forward, on the emulator
    model = Tower()
    rows = torch.from_numpy(trainer.table.lookup(probe.ids).reshape(B, F, DIM))
    with torch.no_grad():
        want = torch.func.functional_call(model, trainer.named_params(), (rows, torch.from_numpy(probe.dense)))
    assert rel(got, want) <= TOL
    trainer.step(probe)  # trained, not synced: serving still answers with the old model
    assert rel(trainer.serving.predict(probe.ids, probe.dense), got) == 0.0
    with pytest.raises(TrainingError, match="compiled for"):
        trainer.serving.predict(probe.ids[:4], probe.dense[:4])


def test_an_op_whose_backward_the_compiler_refuses_names_the_model_line() -> None:
    """max_pool1d's backward (max_pool2d_with_indices_backward) lowers through torch-mlir to
    a reduction rdu-convert-linalg refuses: at compile time, with the model's line."""
    from rdu_compiler.errors import CompileError

    class Pooled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(DIM, 1)

        def forward(self, rows: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
            return self.lin(nn.functional.max_pool1d(rows.transpose(1, 2), F).squeeze(2)).squeeze(1)

    with pytest.raises(CompileError, match=r"test_online_training.py:\d+ `return self.lin\(nn.functional.max_pool1d"):
        CompiledTrainStep(Pooled(), "bce", SGD(), torch.zeros(B, F, DIM), torch.zeros(B, D), torch.zeros(B))


def test_lookup_inside_the_compiled_step_equals_eager() -> None:
    """`lookup_in_step=True`: the step takes the IDs, the table's index and rows, probes and
    gathers inside the compiled program (a hash_probe kernel, an absent ID reading the zero
    row); 8 SGD steps equal eager as with the numpy lookup. The table starts at 64 rows and
    holds more after the stream, so its row store grew and the step was recompiled for the
    new shapes."""
    table = CollisionlessTable(DIM, capacity=64, optimizer=OPTIMIZERS["sgd"], init_std=0.1, seed=7)
    eager = EagerOnlineTrainer(Tower(), table, capacity=512)
    trainer = OnlineTrainer(Tower(), table, sync_every=2, lookup_in_step=True)
    for batch in zipf_stream(8, B, F, D, vocab=40, seed=1):
        rec = trainer.step(batch)
        want = eager.step(batch.ids, batch.dense, batch.labels, batch.now)
        assert abs(rec.loss - want) <= TOL * abs(want)
    _same_state(trainer, eager)
    assert trainer.compiled is not None
    assert trainer.compiled.program.report["totals"]["kernel_kinds"].get("hash_probe") == 1
    assert len(trainer.table) > 64 and trainer.compiles >= 2
    with pytest.raises(TrainingError, match="lookup_in_step"):
        OnlineTrainer(Tower(), table, compiled=trainer.compiled)
