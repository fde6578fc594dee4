"""The eager reference of online training: the same steps in PyTorch, to compare with.

Autograd computes the gradients, `torch.optim` steps the dense parameters and the embedding
rows (an `nn.Parameter` of `capacity` rows, one slot per present ID, given a dense gradient
that is zero off the touched rows, so untouched rows do not move under SGD or Adagrad).
The table's bookkeeping is the same policy in plain Python: a dict from raw ID to slot, a
fresh admission filter of the same kind fed the same occurrences, the initial row of an ID
from `hashing.normal_rows` (a pure function of seed and ID), stamps and expiry by the clock.
Nothing here calls the compiler or the `CollisionlessTable`.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from rdu_compiler.embedding import (
    SGD,
    Adagrad,
    CollisionlessTable,
    CountingFilter,
    ProbabilisticFilter,
)
from rdu_compiler.embedding.hashing import as_ids, normal_rows
from rdu_compiler.train.step import Loss, resolve_loss


def _torch_optimizer(opt: SGD | Adagrad, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    if isinstance(opt, SGD):
        return torch.optim.SGD(params, lr=opt.lr)
    return torch.optim.Adagrad(params, lr=opt.lr, eps=opt.eps, initial_accumulator_value=opt.initial_accumulator_value)


class EagerOnlineTrainer:
    """Eager PyTorch doing what `OnlineTrainer` does, step for step.

    Args:
        model: the model (deep-copied; the copy's parameters are trained).
        like: a fresh `CollisionlessTable` whose configuration (dim, optimizer, admission
            filter, expiry, init_std, seed) the reference copies; its filter is deep-copied
            before any use, so pass the table before training starts.
        optimizer: the dense optimizer (default: the table's).
        capacity: embedding slots (the most IDs present at once).
        loss, expire_every: as `OnlineTrainer`.
    """

    def __init__(self, model: nn.Module, like: CollisionlessTable, optimizer: SGD | Adagrad | None = None, *,
                 capacity: int = 4096, loss: str | Loss = "bce", expire_every: int | None = 1):
        self.model = copy.deepcopy(model)
        self.dim, self.expiry, self.init_std, self.seed = like.dim, like.expiry, like.init_std, like.seed
        self.admission: CountingFilter | ProbabilisticFilter | None = copy.deepcopy(like.admission)
        self.loss = resolve_loss(loss)
        self.expire_every = expire_every
        self.weight = nn.Parameter(torch.zeros(capacity, self.dim))
        self.sparse_opt = _torch_optimizer(like.optimizer, [self.weight])
        self.init_acc = float(getattr(like.optimizer, "initial_accumulator_value", 0.0))
        self.dense_opt = _torch_optimizer(optimizer or like.optimizer, list(self.model.parameters()))
        self.slot: dict[int, int] = {}
        self.stamp: dict[int, int] = {}
        self.free = list(range(capacity - 1, -1, -1))
        self.steps = 0
        self.losses: list[float] = []
        self.model_s: list[float] = []  # wall time of forward, loss, backward and the dense step

    def _insert(self, key: int) -> None:
        if not self.free:
            raise RuntimeError(f"EagerOnlineTrainer: more than {len(self.weight)} IDs present; raise capacity")
        s = self.free.pop()
        self.slot[key] = s
        with torch.no_grad():
            self.weight[s] = torch.from_numpy(normal_rows(np.array([key], np.uint64), self.dim, self.init_std, self.seed)[0])
            state = self.sparse_opt.state[self.weight]
            if "sum" in state:  # Adagrad: a new row starts from the initial accumulator
                state["sum"][s] = self.init_acc

    def step(self, ids: Any, dense: Any, labels: Any, now: int | None = None) -> float:
        """One step on a batch (ids (B, F), dense (B, D), labels (B,)); returns the loss."""
        ids_np = np.asarray(ids)
        b, f = ids_np.shape
        flat = as_ids(ids_np)
        now = self.steps if now is None else int(now)
        keys = [int(k) for k in flat]
        present = np.array([k in self.slot for k in keys])
        rows = torch.zeros(len(keys), self.dim)
        if present.any():
            idx = torch.tensor([self.slot[k] for k, p in zip(keys, present, strict=True) if p])
            rows[torch.from_numpy(present)] = self.weight.detach()[idx]
        t0 = time.perf_counter()
        rows = rows.reshape(b, f, self.dim).requires_grad_(True)
        labels_t = torch.as_tensor(labels, dtype=torch.float32).reshape(b)
        out = self.model(rows, torch.as_tensor(dense, dtype=torch.float32))
        loss = self.loss(out.reshape(b), labels_t)
        self.dense_opt.zero_grad()
        loss.backward()
        self.dense_opt.step()
        self.model_s.append(time.perf_counter() - t0)
        assert rows.grad is not None
        grads = rows.grad.reshape(len(keys), self.dim)
        # admission: every occurrence of an ID absent before this batch counts, in stream order
        absent_occ = np.flatnonzero(~present)
        if len(absent_occ):
            ok = (np.ones(len(absent_occ), bool) if self.admission is None
                  else self.admission.admit(flat[absent_occ]))
            for k in dict.fromkeys(keys[i] for i in absent_occ[ok]):  # first-admission order
                self._insert(k)
        stepped = [i for i, k in enumerate(keys) if k in self.slot]
        grad = torch.zeros_like(self.weight)
        if stepped:
            grad.index_add_(0, torch.tensor([self.slot[keys[i]] for i in stepped]), grads[stepped])
        self.weight.grad = grad
        self.sparse_opt.step()
        for i in stepped:
            self.stamp[keys[i]] = now
        self.steps += 1
        if self.expiry is not None and self.expire_every and self.steps % self.expire_every == 0:
            for k in [k for k, t in self.stamp.items() if now - t > self.expiry]:
                self.free.append(self.slot.pop(k))
                del self.stamp[k]
        self.losses.append(float(loss.detach()))
        return self.losses[-1]

    def ids(self) -> np.ndarray:
        """The IDs present (uint64, sorted)."""
        return np.sort(np.array(list(self.slot), dtype=np.uint64))

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Rows of present `ids` ((n, dim) float32)."""
        return self.weight.detach()[[self.slot[int(k)] for k in ids]].numpy()

    def state_of(self, ids: np.ndarray) -> np.ndarray | None:
        """Adagrad accumulators of present `ids` ((n, dim)), or None for SGD."""
        state = self.sparse_opt.state[self.weight]
        return state["sum"][[self.slot[int(k)] for k in ids]].numpy() if "sum" in state else None

    def params(self) -> list[torch.Tensor]:
        """The dense parameters (`named_parameters()` order)."""
        return [p.detach() for p in self.model.parameters()]
