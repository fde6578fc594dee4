"""Sparse row optimizers for embedding tables: the update of the rows a batch touched.

Each matches `torch.optim` on the touched rows of a dense parameter (with weight decay 0
and no learning-rate decay), so a table trained through `CollisionlessTable.apply_gradients`
equals an `nn.Embedding` trained by PyTorch on the same steps: untouched rows of a dense
parameter do not move under either optimizer (their gradient is zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SGD:
    """row -= lr * grad (`torch.optim.SGD`, momentum 0)."""

    lr: float = 0.01
    state_per_row: int = 0  # floats of optimizer state per row element

    def step(self, rows: np.ndarray, grads: np.ndarray, state: np.ndarray | None) -> None:
        rows -= np.float32(self.lr) * grads


@dataclass(frozen=True)
class Adagrad:
    """acc += grad^2; row -= lr * grad / (sqrt(acc) + eps) (`torch.optim.Adagrad` with
    `initial_accumulator_value` and `eps` as given; lr_decay 0, weight_decay 0)."""

    lr: float = 0.01
    eps: float = 1e-10
    initial_accumulator_value: float = 0.0
    state_per_row: int = 1

    def step(self, rows: np.ndarray, grads: np.ndarray, state: np.ndarray | None) -> None:
        assert state is not None
        state += grads * grads
        rows -= np.float32(self.lr) * grads / (np.sqrt(state) + np.float32(self.eps))
