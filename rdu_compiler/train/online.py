"""Online training as Monolith does it: a stream of mini-batches, a collisionless table
trained sparsely, and a serving copy synced with the touched rows only.

Per mini-batch (`OnlineTrainer.step`):

1. **lookup**: the batch's raw IDs (B, F) gather their rows from the `CollisionlessTable`
   (a miss reads zeros and inserts nothing);
2. **compiled step** (emulator): forward, loss, backward and the dense optimizer, compiled
   from PyTorch (`train.step.CompiledTrainStep`); it returns the loss, the new dense
   parameters and optimizer state, and d loss / d rows;
3. **sparse update** (the table, as Monolith's parameter server): equal IDs' gradients are
   summed, new IDs go through the admission filter, admitted ones are inserted with their
   initial row, every present row takes one step of the table's optimizer and is stamped
   with the batch's clock;
4. **expiry** every `expire_every` steps: IDs last written more than `table.expiry` ago go;
5. **sync** every `sync_every` steps: the serving copy receives the rows written since the
   last sync (ID, row, stamp) and the dense parameters; it expires by the same clock, so
   deletions cost no bytes beyond the clock (8 B).

Modelled time per step (`StepRecord`): the compiled step's `report["totals"]["estimated_s"]`
and the sparse update's `cost.tiering.sparse_update_cost` (every touched row, with the
optimizer's state rows, read and written at the table's tier's burst): `update_tier`
"hbm" or "ddr", by default HBM when the table's rows and state fit the fabric's HBM, else
DDR.

Bytes per synced row: 8 (uint64 ID) + 4 dim (fp32 row) + 8 (int64 stamp). A full copy would
send every present row each time (`SyncRecord.full_row_bytes`); the optimizer state stays
with the trainer (serving does not train).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from rdu_compiler.embedding import SGD, Adagrad, CollisionlessTable
from rdu_compiler.embedding.hashing import as_ids
from rdu_compiler.embedding.probe import index_array
from rdu_compiler.train.step import (
    CompiledForward,
    CompiledTrainStep,
    Loss,
    TrainingError,
    as_float,
    initial_state,
)

ID_BYTES = 8  # uint64 raw ID
STAMP_BYTES = 8  # int64 last-write stamp
CLOCK_BYTES = 8  # the expiry clock sent with a sync


@dataclass
class Batch:
    """One mini-batch of the stream.

    Attributes:
        ids: (B, F) raw 64-bit IDs (int64 or uint64), F sparse features per sample (one
            table: encode the feature in the ID's high bits, as Monolith's FIDs do).
        dense: (B, D) float32 dense features (D may be 0).
        labels: (B,) float32 (0/1 clicks for loss="bce").
        now: the clock (integer, e.g. seconds); None: the trainer's step count.
    """

    ids: Any
    dense: Any
    labels: Any
    now: int | None = None


@dataclass
class SyncRecord:
    """What one sync sent to the serving copy.

    Attributes:
        step, now: the trainer's step count and clock at the sync.
        rows: rows sent (the IDs written since the last sync that are still present).
        row_bytes: rows x (ID + row + stamp) bytes; full_row_bytes: the same for every
            present row (a full-copy sync); dense_bytes: the dense parameters (fp32);
            clock_bytes: the expiry clock (8 B when the trainer expired since the last sync).
    """

    step: int
    now: int
    rows: int
    row_bytes: int
    full_row_bytes: int
    dense_bytes: int
    clock_bytes: int

    @property
    def bytes(self) -> int:
        """Total bytes of this touched-row sync."""
        return self.row_bytes + self.dense_bytes + self.clock_bytes


class ServingCopy:
    """The serving side: a table without optimizer state or admission, and the dense
    parameters, updated only by `receive` (what a sync sends); `predict` runs the model's
    forward, compiled, on the emulator with what it has."""

    def __init__(self, dim: int, expiry: float | None, param_names: list[str], model: nn.Module | None = None,
                 fabric: str = "sn40l", opt_level: int = 1):
        self.table = CollisionlessTable(dim, capacity=1024, expiry=expiry, optimizer=SGD())
        self.param_names = list(param_names)
        self.params: dict[str, torch.Tensor] = {}
        self.bytes_received = 0
        self.model, self.fabric, self.opt_level = model, fabric, opt_level
        self.forward: CompiledForward | None = None

    def predict(self, ids: Any, dense: Any) -> torch.Tensor:
        """Logits (B,) for raw IDs (B, F) and dense features (B, D), from the synced rows and
        parameters (compiled at the first call, for these shapes).

        Raises:
            TrainingError: nothing synced yet, no model, or wrong shapes / dtypes.
        """
        if self.model is None or not self.params:
            raise TrainingError("the serving copy has no model or no synced parameters yet: call OnlineTrainer.sync() "
                                "(or step until sync_every) before predict")
        arr = np.asarray(ids)
        try:
            flat = as_ids(arr)
        except TypeError as e:
            raise TrainingError(f"predict ids: {e}") from None
        if arr.ndim != 2:
            raise TrainingError(f"predict ids must be (B, F) raw IDs, got shape {arr.shape}")
        rows = torch.from_numpy(self.table.lookup(flat).reshape(*arr.shape, self.table.dim))
        x = as_float(dense, "dense")
        if self.forward is None:
            self.forward = CompiledForward(self.model, rows, x, fabric=self.fabric, opt_level=self.opt_level)
        if (tuple(rows.shape), tuple(x.shape)) != self.forward.shapes:
            raise TrainingError(f"predict got rows {tuple(rows.shape)} and dense {tuple(x.shape)}, but the serving forward "
                                f"was compiled for {self.forward.shapes[0]} and {self.forward.shapes[1]} (static shapes)")
        return self.forward(rows, x, [self.params[n] for n in self.param_names])

    def receive(self, ids: np.ndarray, rows: np.ndarray, stamps: np.ndarray, params: list[torch.Tensor],
                expire_at: int | None) -> None:
        """Upsert (ids, rows) with their stamps, expire by the trainer's clock `expire_at`,
        and take the dense parameters."""
        for stamp in np.unique(stamps):
            m = stamps == stamp
            self.table.assign(ids[m], rows[m], now=int(stamp))
        if expire_at is not None:
            self.table.expire(expire_at)
        self.params = {n: p.detach().clone() for n, p in zip(self.param_names, params, strict=True)}

    def lookup(self, ids: Any) -> np.ndarray:
        """Rows of `ids` as the serving copy has them ((n, dim) float32; zeros if absent)."""
        return self.table.lookup(ids)


@dataclass
class StepRecord:
    """One step: loss, the table's counts (updated/admitted/rejected), IDs expired, the
    wall time of the compiled step and of the table's part (seconds, this host), and the
    modelled time on the fabric: the compiled step's estimate and the sparse update's
    (`update_bytes` read + written at the tier's burst, `update_s` seconds)."""

    step: int
    now: int
    loss: float
    updated: int
    admitted: int
    rejected: int
    expired: int
    step_s: float
    table_s: float
    synced: bool = False
    modelled_step_s: float = 0.0
    update_bytes: float = 0.0
    update_s: float = 0.0


@dataclass
class _Dirty:
    chunks: list[np.ndarray] = field(default_factory=list)

    def add(self, ids: np.ndarray) -> None:
        self.chunks.append(ids)

    def take(self) -> np.ndarray:
        out = np.unique(np.concatenate(self.chunks)) if self.chunks else np.zeros(0, np.uint64)
        self.chunks = []
        return out


class OnlineTrainer:
    """Train `model` and `table` online on the emulator, Monolith-style (module docstring).

    Args:
        model: `model(rows (B, F, dim), dense (B, D)) -> (B,) or (B, 1)`; its parameters
            are the dense parameters (read once; the trainer keeps its own copies, `params`).
        table: the `CollisionlessTable` (its optimizer trains the rows, its admission filter
            and expiry apply).
        optimizer: the dense parameters' `SGD` / `Adagrad`; default: the table's.
        sync_every: steps between syncs of the serving copy (None: never).
        loss: "bce", "mse" or a function (see `CompiledTrainStep`).
        expire_every: steps between `table.expire(now)` calls (None: never; ignored when
            the table has no expiry).
        fabric, opt_level: passed to the compiler.
        update_tier: "hbm", "ddr" or None (the table's tier for the sparse update's modelled
            cost; None: HBM when the table's rows and optimizer state fit the fabric's HBM).
        compiled: a `CompiledTrainStep` of the same model, loss and dense optimizer to reuse
            (None: compile at the first batch, for its shapes).
        lookup_in_step: compile the lookup into the step (the table's index and rows are the
            step's inputs: a `hash_probe` kernel and a row gather, charged in
            `modelled_step_s`), instead of gathering the rows in numpy before it. The step is
            recompiled when the table's index or row store grows (new static shapes).

    Every batch must have the shapes the step was compiled for.
    """

    def __init__(self, model: nn.Module, table: CollisionlessTable, optimizer: SGD | Adagrad | None = None, *,
                 sync_every: int | None = 1, loss: str | Loss = "bce", expire_every: int | None = 1,
                 fabric: str = "sn40l", opt_level: int = 1, compiled: CompiledTrainStep | None = None,
                 update_tier: str | None = None, lookup_in_step: bool = False):
        if not isinstance(table, CollisionlessTable):
            raise TrainingError(f"OnlineTrainer needs a CollisionlessTable, got {type(table).__name__}")
        for name, v in (("sync_every", sync_every), ("expire_every", expire_every)):
            if v is not None and (not isinstance(v, int) or v < 1):
                raise TrainingError(f"OnlineTrainer {name} must be a positive integer or None, got {v!r}")
        self.model, self.table, self.loss = model, table, loss
        self.optimizer = optimizer or table.optimizer
        if not isinstance(self.optimizer, SGD | Adagrad):
            raise TrainingError(f"the dense optimizer must be rdu_compiler.embedding.SGD or Adagrad, got "
                                f"{type(self.optimizer).__name__}")
        self.sync_every, self.expire_every = sync_every, expire_every
        self.fabric, self.opt_level = fabric, opt_level
        self.update_tier = self._tier(update_tier)
        self.param_names = [n for n, _ in model.named_parameters()]
        self.params = [p.detach().clone().float() for p in model.parameters()]
        self.state = initial_state(self.optimizer, self.params)
        self.serving = ServingCopy(table.dim, table.expiry, self.param_names, model, fabric, opt_level)
        self.compiled = compiled
        self.lookup_in_step = lookup_in_step
        self.compiles = 0
        if compiled is not None and lookup_in_step != (compiled.lookup_shapes is not None):
            raise TrainingError("the compiled step's lookup_in_step does not match the trainer's; compile the step "
                                "with the same setting (pass compiled=None)")
        if compiled is not None and (compiled.optimizer != self.optimizer or compiled.layout.param_names != self.param_names):
            raise TrainingError(f"the compiled step was built for optimizer {compiled.optimizer} and parameters "
                                f"{compiled.layout.param_names[:4]}..., not {self.optimizer} and {self.param_names[:4]}...; "
                                "compile the step for this model and optimizer (pass compiled=None)")
        self.steps, self.now = 0, None
        self.history: list[StepRecord] = []
        self.syncs: list[SyncRecord] = []
        self._dirty = _Dirty()
        self._expired_at: int | None = None

    def _tier(self, tier: str | None) -> str:
        if tier is not None:
            if tier not in ("hbm", "ddr"):
                raise TrainingError(f"OnlineTrainer update_tier must be 'hbm', 'ddr' or None, got {tier!r}")
            return tier
        state = self.table.state.nbytes if self.table.state is not None else 0
        return "hbm" if self.table.rows.nbytes + state <= self._fabric().hbm.capacity_bytes else "ddr"

    def _fabric(self) -> Any:
        """The fabric spec, loaded once (the sparse update's cost reads it every step)."""
        if getattr(self, "_fabric_spec", None) is None:
            from rdu_compiler.fabric import load_fabric

            self._fabric_spec = load_fabric(self.fabric)
        return self._fabric_spec

    def _update_cost(self, rows: int) -> dict[str, float]:
        from rdu_compiler.cost.tiering import sparse_update_cost

        return sparse_update_cost(rows, self.table.dim, self._fabric(), self.update_tier, itemsize=4,
                                  state_rows=self.table.optimizer.state_per_row)

    # ------------------------------------------------------------------ batches
    def _check(self, batch: Batch) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, int]:
        try:
            ids = np.asarray(batch.ids)
            flat = as_ids(ids)
        except TypeError as e:
            raise TrainingError(f"batch ids: {e}") from None
        if ids.ndim != 2:
            raise TrainingError(f"batch ids must be (B, F) raw IDs, F per sample; got shape {ids.shape}")
        dense, labels = as_float(batch.dense, "dense"), as_float(batch.labels, "labels")
        b = ids.shape[0]
        if dense.ndim != 2 or dense.shape[0] != b:
            raise TrainingError(f"batch dense must be (B, D) with B = {b} (the ids' rows), got {tuple(dense.shape)}")
        if labels.numel() != b:
            raise TrainingError(f"batch labels must hold one value per sample (B = {b}), got shape {tuple(labels.shape)}")
        labels = labels.reshape(b)
        if self.compiled is not None:
            lay = self.compiled.layout
            want = (lay.rows_shape[:2], lay.dense_shape)
            if (tuple(ids.shape), tuple(dense.shape)) != want:
                raise TrainingError(f"batch has ids {tuple(ids.shape)} and dense {tuple(dense.shape)}, but the step was "
                                    f"compiled for ids {want[0]} and dense {want[1]} (static shapes); pad the batch "
                                    "to that size or build another OnlineTrainer for it")
        now = self.steps if batch.now is None else batch.now
        if not isinstance(now, int | np.integer):
            raise TrainingError(f"batch now must be an integer clock, got {now!r}")
        if self.now is not None and now < self.now:
            raise TrainingError(f"batch clock went back: now = {now} after {self.now}; expiry and sync need a "
                                "non-decreasing clock")
        return flat, dense, labels, int(now)

    def step(self, batch: Batch) -> StepRecord:
        """Train on one mini-batch (lookup, compiled step, sparse update, expiry, sync).

        Raises:
            TrainingError: the batch's shapes, dtypes or clock are wrong (nothing changes).
            TableFullError: an admitted ID does not fit in the table's `max_rows` (the table
                and the dense parameters are left as they were).
        """
        flat, dense, labels, now = self._check(batch)
        b, f = np.asarray(batch.ids).shape
        rows = torch.from_numpy(self.table.lookup(flat).reshape(b, f, self.table.dim))
        lookup = None
        if self.lookup_in_step:  # the snapshot the step probes: index, rows + the zero row
            weight = np.concatenate([self.table.rows, np.zeros((1, self.table.dim), np.float32)])
            lookup = (torch.from_numpy(flat.view(np.int64).reshape(b, f).copy()), torch.from_numpy(index_array(self.table)),
                      torch.from_numpy(weight))
        stale = lookup is not None and self.compiled is not None and \
            self.compiled.lookup_shapes != (tuple(lookup[1].shape), tuple(lookup[2].shape))
        if self.compiled is None or stale:  # first batch, or the table grew: new static shapes
            self.compiled = CompiledTrainStep(self.model, self.loss, self.optimizer, rows, dense, labels,
                                              fabric=self.fabric, opt_level=self.opt_level, lookup=lookup)
            self.compiles += 1
        t0 = time.perf_counter()
        if lookup is not None:
            loss, g_rows, params, state = self.compiled.call_lookup(*lookup, dense, labels, self.params, self.state)
        else:
            loss, g_rows, params, state = self.compiled(rows, dense, labels, self.params, self.state)
        t1 = time.perf_counter()
        counts = self.table.apply_gradients(flat, g_rows.reshape(-1, self.table.dim).numpy(), now=now)
        self.params, self.state = params, state  # after the table took the step (TableFullError: no change)
        unique = np.unique(flat)
        self._dirty.add(unique[self.table.find(unique) >= 0])
        self.steps += 1
        self.now = now
        expired = 0
        if self.table.expiry is not None and self.expire_every and self.steps % self.expire_every == 0:
            expired = self.table.expire(now)
            self._expired_at = now
        update = self._update_cost(counts["updated"] + counts["admitted"])
        rec = StepRecord(self.steps, now, float(loss), counts["updated"], counts["admitted"], counts["rejected"],
                         expired, t1 - t0, time.perf_counter() - t1,
                         modelled_step_s=float(self.compiled.program.report["totals"]["estimated_s"]),
                         update_bytes=update["bytes"], update_s=update["s"])
        if self.sync_every and self.steps % self.sync_every == 0:
            self.sync()
            rec.synced = True
        self.history.append(rec)
        return rec

    # ------------------------------------------------------------------ serving
    def row_bytes(self) -> int:
        """Bytes one synced row costs: ID + fp32 row + stamp."""
        return ID_BYTES + 4 * self.table.dim + STAMP_BYTES

    def sync(self) -> SyncRecord:
        """Send the rows written since the last sync (and still present), the dense
        parameters and, if the trainer expired since, its expiry clock."""
        ids = self._dirty.take()
        r = self.table.find(ids)
        ids, r = ids[r >= 0], r[r >= 0]
        rows, stamps = self.table.rows[r].copy(), self.table.stamps[r].copy()
        expire_at, self._expired_at = self._expired_at, None
        self.serving.receive(ids, rows, stamps, self.params, expire_at)
        rec = SyncRecord(self.steps, self.now if self.now is not None else 0, len(ids), len(ids) * self.row_bytes(),
                         len(self.table) * self.row_bytes(), sum(4 * p.numel() for p in self.params),
                         CLOCK_BYTES if expire_at is not None else 0)
        self.serving.bytes_received += rec.bytes
        self.syncs.append(rec)
        return rec

    def named_params(self) -> dict[str, torch.Tensor]:
        """The trainer's current dense parameters by name."""
        return dict(zip(self.param_names, self.params, strict=True))
