"""A training step compiled from PyTorch: forward, loss, backward and the dense optimizer in
one program, run on the emulator.

The compiler imports inference graphs (torch.export -> torch-mlir -> linalg). A training
step gets through the same importer as a *function without autograd in it*: the step is
written functionally (`torch.func.functional_call` for the model, `torch.func.grad_and_value`
for the gradients), traced by `make_fx` into an ATen graph whose backward ops are explicit
(`mm`, `threshold_backward`, `sum`, ...), and that GraphModule is compiled like any model.
This is the route torch-mlir's own training examples take (`make_fx` + `functional_call`,
llvm/torch-mlir#861; `functorch.grad` + `make_fx`, iree-org/iree-torch#54); torch.export
itself does not capture backward graphs (pytorch/pytorch#113552). Exporting the
`grad_and_value` module directly is refused by the public `torch.export.export` ("attempted
to apply meta conversion to view functorch tensor") and, through the compiler's one-trace
ATen export, lost the gradients of every op the compiler's decomposition table rewrites
(GELU, LayerNorm, softmax: zeros); `make_fx` first computes the backward in eager autograd
semantics, so the decomposition table only ever sees plain ATen ops. docs/embedding.md
("Online training") records what each route gave.

The step's signature (every tensor a program input, nothing baked in but hyperparameters):

    step(rows, dense, labels, *params, *state) -> (loss, grad_rows, *new_params, *new_state)

- `rows`: (B, F, dim) float32, the embedding rows the batch's F IDs per sample gathered;
- `dense`: (B, D) float32 dense features; `labels`: (B,) float32;
- `params`: the model's parameters in `named_parameters()` order; `state`: the dense
  optimizer's state (Adagrad: one accumulator per parameter; SGD: none);
- `loss`: () float32; `grad_rows`: (B, F, dim), d loss / d rows for each occurrence (equal
  IDs are summed by the table, Monolith's HashReduce).

The sparse update of the embedding rows is not in the program: the table's optimizer applies
`grad_rows` to the touched rows (`CollisionlessTable.apply_gradients`), as Monolith's
parameter servers do; docs/embedding.md explains the split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rdu_compiler.embedding import SGD, Adagrad
from rdu_compiler.errors import RduError

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class TrainingError(RduError):
    """A training step or batch the online trainer refuses (wrong shapes, dtypes, model)."""


def bce_with_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of `logits` (B,) against 0/1 `labels` (B,)."""
    return nn.functional.binary_cross_entropy_with_logits(logits, labels)


def mse(out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean squared error of `out` (B,) against `labels` (B,)."""
    return nn.functional.mse_loss(out, labels)


LOSSES: dict[str, Loss] = {"bce": bce_with_logits, "mse": mse}


def dense_update(optimizer: SGD | Adagrad, params: list[torch.Tensor], grads: list[torch.Tensor],
                 state: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """One optimizer step on dense tensors, written as torch.optim computes it (weight decay
    0, no lr decay, no momentum): SGD `p - lr g`; Adagrad `s + g g`, `p - lr g / (sqrt(s) + eps)`.
    Returns (new params, new state)."""
    if isinstance(optimizer, SGD):
        return [p - optimizer.lr * g for p, g in zip(params, grads, strict=True)], []
    new_state = [s + g * g for s, g in zip(state, grads, strict=True)]
    new_params = [p - optimizer.lr * (g / (s.sqrt() + optimizer.eps)) for p, g, s in zip(params, grads, new_state, strict=True)]
    return new_params, new_state


def initial_state(optimizer: SGD | Adagrad, params: list[torch.Tensor]) -> list[torch.Tensor]:
    """The dense optimizer's state before the first step (Adagrad: `initial_accumulator_value`)."""
    if isinstance(optimizer, SGD):
        return []
    return [torch.full_like(p, optimizer.initial_accumulator_value) for p in params]


@dataclass
class StepLayout:
    """Where each tensor of the step's inputs and outputs is.

    Attributes:
        param_names: the model's parameter names (`named_parameters()` order).
        n_state: optimizer state tensors (one per parameter for Adagrad, 0 for SGD).
        rows_shape, dense_shape, labels_shape: the static batch shapes (B, F, dim), (B, D), (B,).
    """

    param_names: list[str]
    n_state: int
    rows_shape: tuple[int, ...]
    dense_shape: tuple[int, ...]
    labels_shape: tuple[int, ...]


def step_function(model: nn.Module, loss: Loss, optimizer: SGD | Adagrad, n_params: int,
                  miss_row: int | None = None) -> Callable[..., tuple[torch.Tensor, ...]]:
    """The functional training step (see the module docstring) of `model`. With `miss_row`
    (the lookup inside the step) its first inputs are (ids (B, F) int64, index (buckets, 4, 2)
    int64, weight (miss_row + 1, dim)) instead of rows: the step probes the index
    (`torch.ops.rdu.hash_find`, a `hash_probe` kernel once compiled; an absent ID gets
    `miss_row`, the zero row) and gathers the rows itself."""
    names = [n for n, _ in model.named_parameters()]

    def loss_of(rows: torch.Tensor, params: tuple[torch.Tensor, ...], dense: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(model, dict(zip(names, params, strict=True)), (rows, dense))
        return loss(out.reshape(labels.shape), labels)

    def step(rows: torch.Tensor, dense: torch.Tensor, labels: torch.Tensor, *flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        params, state = tuple(flat[:n_params]), list(flat[n_params:])
        (g_rows, g_params), value = torch.func.grad_and_value(loss_of, argnums=(0, 1))(rows, params, dense, labels)
        new_params, new_state = dense_update(optimizer, list(params), list(g_params), state)
        return (value, g_rows, *new_params, *new_state)

    if miss_row is None:
        return step
    from rdu_compiler.frontend.torch.collisionless import hash_find

    def lookup_step(ids: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
        rows = torch.nn.functional.embedding(hash_find(ids.reshape(-1), index, miss_row), weight)
        return step(rows.reshape(*ids.shape, weight.shape[1]), *rest)

    return lookup_step


def check_model(model: nn.Module, rows: torch.Tensor, dense: torch.Tensor, labels: torch.Tensor) -> None:
    """Refuse a model the step cannot train: no parameters, buffers that training would
    update, or an output that is not one value per sample.

    Raises:
        TrainingError: naming the model and what to change.
    """
    name = type(model).__name__
    if not any(True for _ in model.parameters()):
        raise TrainingError(f"{name} has no parameters: there is nothing dense to train; give the model at least "
                            "one nn.Parameter (e.g. an nn.Linear on the embedding rows)")
    bad = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    if bad:
        raise TrainingError(f"{name}.{bad[0]} is a BatchNorm in training mode: its running statistics are buffers the "
                            "compiled step does not update; use LayerNorm, or call .eval() on it to freeze the statistics")
    with torch.no_grad():
        out = model(rows, dense)
    if not isinstance(out, torch.Tensor) or out.numel() != labels.numel():
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise TrainingError(f"{name}(rows {tuple(rows.shape)}, dense {tuple(dense.shape)}) returned {shape}; the online "
                            f"trainer needs one value per sample ({labels.numel()}: a logit for loss='bce'), "
                            "shaped (B,) or (B, 1)")


def trace_step(model: nn.Module, loss: Loss, optimizer: SGD | Adagrad, rows: torch.Tensor, dense: torch.Tensor,
               labels: torch.Tensor, lookup: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
               ) -> tuple[torch.fx.GraphModule, StepLayout, tuple[torch.Tensor, ...]]:
    """The step of `model` traced by `make_fx` on example tensors; with `lookup` = (ids,
    index, weight) the step that probes and gathers its rows itself (`step_function`).

    Returns:
        (the ATen GraphModule, its layout, the example inputs it was traced with: rows (or
        ids, index, weight), dense, labels, the model's current parameters, the initial
        optimizer state).
    """
    from torch.fx.experimental.proxy_tensor import make_fx

    params = [p.detach().clone() for p in model.parameters()]
    state = initial_state(optimizer, params)
    fn = step_function(model, loss, optimizer, len(params), None if lookup is None else int(lookup[2].shape[0]) - 1)
    example = (*((rows,) if lookup is None else lookup), dense, labels, *params, *state)
    gm = make_fx(fn, record_stack_traces=True)(*example)  # errors then name the model line
    layout = StepLayout([n for n, _ in model.named_parameters()], len(state), tuple(rows.shape),
                        tuple(dense.shape), tuple(labels.shape))
    return gm, layout, example


class CompiledTrainStep:
    """The training step of `model` compiled for `fabric`, run on the emulator.

    Args:
        model: `model(rows (B, F, dim), dense (B, D)) -> (B,) or (B, 1)`.
        loss: "bce" (mean BCE with logits), "mse", or `loss(out (B,), labels (B,)) -> ()`.
        optimizer: the dense parameters' `SGD` or `Adagrad` (`rdu_compiler.embedding`).
        rows, dense, labels: example tensors; their shapes are the program's static shapes.
        lookup: (ids (B, F) int64, index (buckets, 4, 2) int64, weight (rows + 1, dim), last
            row zeros): compile the lookup into the step (a `hash_probe` kernel and a row
            gather); call it with `call_lookup`. None: the step takes rows (`__call__`).

    Attributes:
        program: the `CompiledProgram`; `layout`: a `StepLayout`.

    Raises:
        TrainingError: an unknown loss, or a model `check_model` refuses.
        RduError: the frontend or a pass refused the step (message names the op).
    """

    def __init__(self, model: nn.Module, loss: str | Loss, optimizer: SGD | Adagrad, rows: torch.Tensor,
                 dense: torch.Tensor, labels: torch.Tensor, fabric: str = "sn40l", opt_level: int = 1,
                 lookup: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None):
        from rdu_compiler.api import compile as rdu_compile

        self.loss, self.optimizer = resolve_loss(loss), optimizer
        check_model(model, rows, dense, labels)
        gm, self.layout, example = trace_step(model, self.loss, optimizer, rows, dense, labels, lookup)
        self.program = rdu_compile(gm, example, fabric=fabric, opt_level=opt_level)
        self.lookup_shapes = None if lookup is None else (tuple(lookup[1].shape), tuple(lookup[2].shape))

    def __call__(self, rows: torch.Tensor, dense: torch.Tensor, labels: torch.Tensor, params: list[torch.Tensor],
                 state: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Run one step: returns (loss (), grad_rows (B, F, dim), new params, new state)."""
        out = self.program.run(rows, dense, labels, *params, *state)
        n = len(params)
        return out[0], out[1], list(out[2:2 + n]), list(out[2 + n:])

    def call_lookup(self, ids: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, dense: torch.Tensor,
                    labels: torch.Tensor, params: list[torch.Tensor], state: list[torch.Tensor],
                    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Run one step compiled with `lookup`: ids (B, F) int64, index and weight of the shapes
        compiled for (`lookup_shapes`); returns as `__call__`."""
        out = self.program.run(ids, index, weight, dense, labels, *params, *state)
        n = len(params)
        return out[0], out[1], list(out[2:2 + n]), list(out[2 + n:])


class CompiledForward:
    """`model`'s forward with its parameters as inputs (what a serving copy runs), compiled
    for `fabric` and run on the emulator: `forward(rows (B, F, dim), dense (B, D), params)
    -> (B,)` logits.

    Raises:
        TrainingError: a model `check_model` refuses. RduError: the compiler refused it.
    """

    def __init__(self, model: nn.Module, rows: torch.Tensor, dense: torch.Tensor, fabric: str = "sn40l",
                 opt_level: int = 1):
        from torch.fx.experimental.proxy_tensor import make_fx

        from rdu_compiler.api import compile as rdu_compile

        b = rows.shape[0]
        check_model(model, rows, dense, torch.zeros(b))
        names = [n for n, _ in model.named_parameters()]

        def forward(rows: torch.Tensor, dense: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
            return torch.func.functional_call(model, dict(zip(names, params, strict=True)), (rows, dense)).reshape(b)

        example = (rows, dense, *[p.detach().clone() for p in model.parameters()])
        self.shapes = (tuple(rows.shape), tuple(dense.shape))
        self.program = rdu_compile(make_fx(forward, record_stack_traces=True)(*example), example, fabric=fabric,
                                   opt_level=opt_level)

    def __call__(self, rows: torch.Tensor, dense: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
        """Logits (B,) of the batch under `params`."""
        return self.program.run(rows, dense, *params)


def resolve_loss(loss: str | Loss) -> Loss:
    """The loss function named by `loss` ("bce", "mse") or `loss` itself.

    Raises:
        TrainingError: an unknown name.
    """
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise TrainingError(f"unknown loss '{loss}'; the named losses are {sorted(LOSSES)}, or pass a function "
                            "loss(out (B,), labels (B,)) -> scalar tensor")
    return LOSSES[loss]


def as_float(x: Any, what: str) -> torch.Tensor:
    """`x` (a tensor or array of real numbers) as a float32 CPU tensor.

    Raises:
        TrainingError: `x` is complex, or not numbers.
    """
    try:
        t = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TrainingError(f"batch {what} is not a numeric array ({type(x).__name__}: {e}); pass a float32 tensor") from None
    if t.is_complex():
        raise TrainingError(f"batch {what} has dtype {t.dtype}; pass real float32 values")
    return t.detach().to(torch.float32)
