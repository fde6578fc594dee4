"""Request mixes: which expert each request goes to (a distribution or a trace), with
prompt and output lengths, as a list of `runtime.Request`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rdu_compiler.coe.runtime import Request
from rdu_compiler.errors import RduError

DISTRIBUTIONS = ("uniform", "zipf", "weights")


def expert_weights(experts: int, distribution: str, zipf_s: float = 1.0, weights: Sequence[float] | None = None) -> np.ndarray:
    """Probability of each expert: uniform, Zipf (p_i ~ 1 / (i + 1)^s) or given weights (normalised).

    Raises:
        RduError: an unknown distribution, or weights of the wrong length or not positive.
    """
    if distribution == "uniform":
        p = np.ones(experts)
    elif distribution == "zipf":
        p = 1.0 / np.arange(1, experts + 1) ** zipf_s
    elif distribution == "weights":
        if weights is None or len(weights) != experts or min(weights) < 0 or sum(weights) <= 0:
            raise RduError(f"distribution 'weights' needs {experts} non-negative weights with a positive sum, "
                           f"got {list(weights) if weights is not None else None}")
        p = np.asarray(weights, dtype=float)
    else:
        raise RduError(f"unknown distribution '{distribution}'; use one of {', '.join(DISTRIBUTIONS)}")
    return p / p.sum()


def requests_from_mix(count: int, experts: int, p: np.ndarray, prompt: int, output: int, batch: int = 1,
                      seed: int = 0) -> list[Request]:
    """`count` requests with experts drawn from `p` (seeded: the same seed gives the same mix)."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(experts, size=count, p=p)
    return [Request(int(e), prompt, output, batch) for e in chosen]


def requests_from_trace(trace: Sequence[int], prompt: int, output: int, batch: int = 1) -> list[Request]:
    """One request per expert index in `trace`, in order."""
    return [Request(int(e), prompt, output, batch) for e in trace]
