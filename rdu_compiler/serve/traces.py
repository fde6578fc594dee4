"""Request traces: seeded generators fitted to the Azure LLM inference traces, and CSV files.

A trace is a list of `Request(arrived_at s, num_prefill_tokens, num_decode_tokens)` sorted by
arrival. The CSV format is Vidur's and Splitwise's: a header with the columns
`arrived_at,num_prefill_tokens,num_decode_tokens` (other columns are ignored).

**The fitted length distributions.** The published statistics (Azure LLM inference traces
2023 as shipped with Vidur; shared/reference/workloads.md, tag [D] computed from the files) are

    conversation: prompt mean 1155 / p50 1020 / p90 2735 / p99 4142,
                  output  mean  211 / p50  129 / p90  424 / p99  601
    code:         prompt mean 2048 / p50 1469 / p90 5194 / p99 7436,
                  output  mean   28 / p50   13 / p90   55 / p99  252

A lognormal cannot match them: one fitted on mean and p50 has p90 1933 for the conversation
prompts (published 2735), one fitted on p50 and p90 has mean 1371 (published 1155). The
fit used here [modelling choice] is a *log-linear quantile function* through anchors

    Q(0) = q_min, Q(0.5) = p50, Q(0.9) = p90, Q(0.99) = p99, Q(1) = q_max,
    log Q linear between anchors; a sample is round(Q(U)), U ~ Uniform(0, 1), at least 1,

so p50, p90 and p99 hold by construction, and the free ends are fitted to the mean:
q_max = p99 * sqrt(p99 / p90) (the tail continued geometrically) and q_min found by
bisection in [1, p50]; when even q_min = 1 gives too high a mean (code outputs), q_max is
lowered by bisection in [p99, q_max] instead. `testsuite/unit/test_serve_traces.py` checks
mean/p50/p90/p99 of 20,000 samples within 5 % of the published numbers.

**Arrivals**: inter-arrival gaps are Gamma with mean 1/rate and coefficient of variation
`cv` (shape 1/cv^2); cv = 1 is a Poisson process. The published traces have CV 1.09
(conversation) and 13.2 (code); Nexus evaluates with Poisson arrivals [S].
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rdu_compiler.errors import RduError

COLUMNS = ("arrived_at", "num_prefill_tokens", "num_decode_tokens")


class TraceError(RduError):
    """A trace file or trace parameter is invalid; the message names file, line and column."""


@dataclass(frozen=True)
class Request:
    """One request: arrival time (seconds from the trace start), prompt tokens, output tokens
    (the first output token comes from prefill, the others from decode steps)."""

    arrived_at: float
    num_prefill_tokens: int
    num_decode_tokens: int


@dataclass(frozen=True)
class LengthStats:
    """Published statistics of one length distribution (tokens)."""

    mean: float
    p50: float
    p90: float
    p99: float


#: trace -> (prompt stats, output stats, published inter-arrival CV) [D, workloads.md].
PUBLISHED: dict[str, tuple[LengthStats, LengthStats, float]] = {
    "conversation": (LengthStats(1155, 1020, 2735, 4142), LengthStats(211, 129, 424, 601), 1.09),
    "code": (LengthStats(2048, 1469, 5194, 7436), LengthStats(28, 13, 55, 252), 13.2),
}

_PROBS = np.array([0.0, 0.5, 0.9, 0.99, 1.0])
_GRID = (np.arange(100_000) + 0.5) / 100_000


@dataclass(frozen=True)
class QuantileFit:
    """A log-linear quantile function through `anchors` (tokens at probabilities 0, .5, .9, .99, 1)."""

    anchors: tuple[float, float, float, float, float]

    def quantile(self, u: np.ndarray) -> np.ndarray:
        """Q(u) in tokens (float) for u in [0, 1]."""
        return np.exp(np.interp(u, _PROBS, np.log(np.array(self.anchors))))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n integer lengths >= 1."""
        return np.maximum(1, np.rint(self.quantile(rng.random(n)))).astype(np.int64)

    def mean(self) -> float:
        """Mean of round(Q(U)) approximated on a fine grid of U (tokens)."""
        return float(np.maximum(1, np.rint(self.quantile(_GRID))).mean())


def fit_lengths(stats: LengthStats) -> QuantileFit:
    """Fit the quantile function (module docstring) to `stats`.

    Raises:
        TraceError: the statistics are not increasing (p50 < p90 < p99) or not positive.
    """
    if not 0 < stats.p50 < stats.p90 < stats.p99 or stats.mean <= 0:
        raise TraceError(f"length statistics {stats} must be positive with p50 < p90 < p99")
    q_max = stats.p99 * math.sqrt(stats.p99 / stats.p90)

    def fit(q_min: float, top: float) -> QuantileFit:
        return QuantileFit((q_min, stats.p50, stats.p90, stats.p99, top))

    if fit(1.0, q_max).mean() <= stats.mean:  # raise q_min until the mean matches
        lo, hi = 0.0, math.log(stats.p50)
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if fit(math.exp(mid), q_max).mean() < stats.mean else (lo, mid)
        return fit(math.exp(lo), q_max)
    lo, hi = math.log(stats.p99), math.log(q_max)  # q_min = 1 is too heavy: lower the top
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fit(1.0, math.exp(mid)).mean() < stats.mean else (lo, mid)
    return fit(1.0, math.exp(lo))


def arrivals(rng: np.random.Generator, rate: float, duration: float, cv: float = 1.0) -> np.ndarray:
    """Arrival times (seconds, sorted, all < duration) of a Gamma renewal process.

    Raises:
        TraceError: rate, duration or cv not positive and finite.
    """
    for name, value in (("rate", rate), ("duration", duration), ("cv", cv)):
        if not (math.isfinite(value) and value > 0):
            raise TraceError(f"{name} must be a positive number, got {value!r}")
    shape = 1.0 / (cv * cv)
    times: list[float] = []
    t = 0.0
    while True:
        gaps = rng.gamma(shape, 1.0 / (rate * shape), size=max(16, int(rate * duration * 1.2) + 16))
        for g in gaps:
            t += float(g)
            if t >= duration:
                return np.array(times)
            times.append(t)


def generate(trace: str, rate: float, duration: float, *, cv: float = 1.0, seed: int = 0) -> list[Request]:
    """A synthetic trace: `trace` in PUBLISHED ("conversation", "code"), `rate` requests/s for
    `duration` seconds, Gamma arrivals with `cv`, lengths from `fit_lengths`. Same seed, same trace.

    Raises:
        TraceError: unknown trace name or bad rate/duration/cv.
    """
    if trace not in PUBLISHED:
        raise TraceError(f"unknown trace {trace!r}; use one of {', '.join(PUBLISHED)} or a .csv file")
    prompt, output, _ = PUBLISHED[trace]
    rng = np.random.default_rng(seed)
    times = arrivals(rng, rate, duration, cv)
    p = fit_lengths(prompt).sample(rng, len(times))
    d = fit_lengths(output).sample(rng, len(times))
    return [Request(float(t), int(a), int(b)) for t, a, b in zip(times, p, d, strict=True)]


def write_csv(path: str | os.PathLike[str], requests: Sequence[Request]) -> None:
    """Write `requests` as a Vidur/Splitwise CSV (written to a temporary, then renamed)."""
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in requests:
            w.writerow((repr(r.arrived_at), r.num_prefill_tokens, r.num_decode_tokens))
    os.replace(tmp, path)


def read_csv(path: str | os.PathLike[str]) -> list[Request]:
    """Read a Vidur/Splitwise CSV: header with `arrived_at,num_prefill_tokens,num_decode_tokens`
    (extra columns ignored); arrived_at seconds >= 0, token counts integers >= 1. Rows are
    returned sorted by arrival.

    Raises:
        TraceError: unreadable file, missing column, or a bad value (names file, line, column).
    """
    path = os.fspath(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as err:
        raise TraceError(f"{path}: cannot read the trace ({err}); check the path") from err
    if not rows:
        raise TraceError(f"{path}: empty file; a trace CSV needs the header {','.join(COLUMNS)}")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise TraceError(
            f"{path}: line 1: the header lacks column(s) {', '.join(missing)} (it has {', '.join(header)}); "
            f"a trace CSV needs {','.join(COLUMNS)}"
        )
    idx = [header.index(c) for c in COLUMNS]
    out: list[Request] = []
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) < len(header):
            raise TraceError(f"{path}: line {line}: {len(row)} field(s), the header has {len(header)}; fix the row")
        t = _number(path, line, COLUMNS[0], row[idx[0]], integer=False)
        p = _number(path, line, COLUMNS[1], row[idx[1]], integer=True)
        d = _number(path, line, COLUMNS[2], row[idx[2]], integer=True)
        out.append(Request(t, int(p), int(d)))
    if not out:
        raise TraceError(f"{path}: no requests after the header; add rows")
    return sorted(out, key=lambda r: r.arrived_at)


def _number(path: str, line: int, column: str, text: str, *, integer: bool) -> float:
    want = "an integer >= 1 (tokens)" if integer else "a number >= 0 (seconds)"
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise TraceError(f"{path}: line {line}, column {column}: {text!r} is not {want}; fix the value") from None
    if (integer and value < 1) or not math.isfinite(value) or value < 0:
        raise TraceError(f"{path}: line {line}, column {column}: {text!r} is not {want}; fix the value")
    return value
