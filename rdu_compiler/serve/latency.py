"""Per-phase latency of a whole model on a fabric share, fitted to compiled programs.

For each share (a `regions.Region`), `build_latency_model` compiles one decoder layer at
prefill chunk lengths and decode (batch, context) points, and the LM head at a few token
counts (`programs.measure`, cached on disk), then fits DistServe's forms [P, DistServe code]
by non-negative least squares on relative error:

    prefill layer(chunks)  = a + b * sum(L) + c * sum(L^2 + 2 L P)      (seconds)
    decode layer(contexts) = a + b * sum(context) + c * batch           (seconds)
    head(T tokens)         = a + b * T                                  (seconds)
    mixed layer(chunks; contexts)                                       (seconds, whole grid)
                           = a + b * (sum(L) + batch) + c * sum(L^2 + 2 L P) + d * sum(context)

A prefill chunk of L new tokens after P cached ones (chunked prefill) does attention over
L * (P + L/2) query-key pairs, so its quadratic term is L^2 + 2 L P (= L^2 when P = 0, the
form DistServe fits). HBM bytes are fitted with the same forms (for contention).

**Mixed steps** (chunked prefill): a compiled mixed-batch program (`programs.MixedLayer`:
prefill chunks and decode tokens in one layer program, weights read once) is measured at
`MIXED_POINTS` on the whole grid, where `chunked` runs, and fitted with the form above.
`LatencyModel.mixed` uses that fit; `LatencyModel.composed` is the older estimate built
from the separate prefill and decode fits, kept to show its error (`mixed_error`).

**Whole model** = layers x layer time + head time over the tokens that need logits (one
per prompt finishing its prefill, one per decoding request). The embedding lookup (a gather
of T rows of `hidden` bf16 values, ~8 KiB per token) is not charged: < 0.1 % of a step.

**Fit error** is measured on validation points compiled fresh (not used in the fit):
`fit_error[rows][phase]` = max |fit - compiled| / compiled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import nnls

from rdu_compiler.bench.models import LlamaSpec
from rdu_compiler.fabric import load_fabric
from rdu_compiler.serve.programs import MODELS, measure
from rdu_compiler.serve.regions import region

Chunk = tuple[int, int]  # (new tokens L, cached tokens P)

#: Default phase points of the sweep (tokens; decode = (batch, context)).
PREFILL_POINTS = (128, 512, 1024, 2048, 4096)
PREFILL_CHECK = (768, 3072)
DECODE_POINTS = ((1, 512), (8, 1024), (32, 1024), (32, 4096), (128, 2048))
DECODE_CHECK = ((16, 2048), (64, 512))
HEAD_POINTS = (1, 64)
HEAD_CHECK = (16,)
#: Mixed-batch points (chunk L, its cached P, decode batch B, context C): L + B <= 512, the
#: chunked policy's default token budget, except the last fit point.
MIXED_POINTS = ((504, 0, 8, 512), (480, 0, 32, 1024), (384, 2048, 128, 1024), (256, 1024, 64, 2048),
                (64, 0, 192, 1024), (448, 4096, 16, 4096), (1024, 0, 32, 2048))
MIXED_CHECK = ((320, 512, 48, 1536), (128, 3072, 96, 512), (496, 1024, 16, 3072))


def prefill_features(chunks: Sequence[Chunk]) -> list[float]:
    """[1, sum L, sum L^2 + 2 L P] of a prefill step."""
    return [1.0, float(sum(c[0] for c in chunks)), float(sum(c[0] * c[0] + 2 * c[0] * c[1] for c in chunks))]


def decode_features(contexts: Sequence[int]) -> list[float]:
    """[1, sum context, batch] of a decode step."""
    return [1.0, float(sum(contexts)), float(len(contexts))]


def head_features(tokens: int) -> list[float]:
    return [1.0, float(tokens)]


def mixed_features(chunks: Sequence[Chunk], contexts: Sequence[int]) -> list[float]:
    """[1, sum L + batch, sum L^2 + 2 L P, sum context] of a mixed step."""
    p = prefill_features(chunks)
    return [1.0, p[1] + len(contexts), p[2], float(sum(contexts))]


def fit_nonneg(features: Sequence[Sequence[float]], values: Sequence[float]) -> list[float]:
    """Non-negative coefficients minimising the sum of squared relative errors."""
    a = np.array(features, dtype=float)
    y = np.array(values, dtype=float)
    w = 1.0 / np.maximum(y, 1e-30)
    coef, _ = nnls(a * w[:, None], y * w)
    return [float(c) for c in coef]


@dataclass
class ShareModel:
    """Fitted coefficients of one share (per layer for prefill/decode, whole head): seconds
    and HBM bytes, against the features above."""

    rows: int
    share: float
    prefill_s: list[float]
    prefill_bytes: list[float]
    decode_s: list[float]
    decode_bytes: list[float]
    head_s: list[float]
    head_bytes: list[float]
    mixed_s: list[float] | None = None  # whole grid only (the chunked policy's)
    mixed_bytes: list[float] | None = None


@dataclass
class LatencyModel:
    """Whole-model step latency per share of one fabric.

    Attributes:
        model: the LlamaSpec; fabric: base fabric name or path; base_rows: its rows;
        hbm_bytes_per_s, hbm_capacity_bytes: the socket's HBM (shared by all regions);
        shares: rows -> ShareModel; fit_error: rows -> phase -> max relative error on
        validation compiles; activation_bytes: peak HBM of the largest prefill program
        less one layer's weights (bytes, reserved outside the KV cache);
        points: every measurement used (for the benchmark's curves).
    """

    model: LlamaSpec
    fabric: str
    base_rows: int
    hbm_bytes_per_s: float
    hbm_capacity_bytes: int
    shares: dict[int, ShareModel]
    fit_error: dict[int, dict[str, float]] = field(default_factory=dict)
    activation_bytes: int = 0
    points: list[dict[str, Any]] = field(default_factory=list)

    def rows_for(self, share: float) -> int:
        """The fitted share closest to `share` (rows)."""
        return min(self.shares, key=lambda r: (abs(r / self.base_rows - share), -r))

    def prefill(self, rows: int, chunks: Sequence[Chunk]) -> tuple[float, float]:
        """(seconds, HBM bytes) of one prefill step of `chunks` on `rows`, all layers + head."""
        s = self.shares[rows]
        x = prefill_features(chunks)
        h = head_features(len(chunks))
        t = self.model.layers * _dot(s.prefill_s, x) + _dot(s.head_s, h)
        b = self.model.layers * _dot(s.prefill_bytes, x) + _dot(s.head_bytes, h)
        return t, b

    def decode(self, rows: int, contexts: Sequence[int]) -> tuple[float, float]:
        """(seconds, HBM bytes) of one decode step of a batch with `contexts` (tokens each)."""
        s = self.shares[rows]
        x = decode_features(contexts)
        h = head_features(len(contexts))
        t = self.model.layers * _dot(s.decode_s, x) + _dot(s.head_s, h)
        b = self.model.layers * _dot(s.decode_bytes, x) + _dot(s.head_bytes, h)
        return t, b

    def mixed(self, rows: int, chunks: Sequence[Chunk], contexts: Sequence[int]) -> tuple[float, float]:
        """(seconds, HBM bytes) of one monolithic step (vLLM/Sarathi chunked prefill), all
        layers + head: the fit of compiled mixed-batch programs when this share has one,
        else `composed`. With no chunks it is `decode`."""
        if not chunks:
            return self.decode(rows, contexts)
        s = self.shares[rows]
        if s.mixed_s is None or s.mixed_bytes is None:
            return self.composed(rows, chunks, contexts)
        x = mixed_features(chunks, contexts)
        h = head_features(len(chunks) + len(contexts))
        t = self.model.layers * _dot(s.mixed_s, x) + _dot(s.head_s, h)
        b = self.model.layers * _dot(s.mixed_bytes, x) + _dot(s.head_bytes, h)
        return t, b

    def composed(self, rows: int, chunks: Sequence[Chunk], contexts: Sequence[int]) -> tuple[float, float]:
        """A mixed step composed from the separate fits, no mixed program: the decode tokens
        join the prefill chunks' matmuls as extra one-token chunks (weights read once), and
        each decode token adds its attention over its context (the decode form's b term).
        With no chunks it is `decode`."""
        if not chunks:
            return self.decode(rows, contexts)
        s = self.shares[rows]
        h = head_features(len(chunks) + len(contexts))
        t, b = composed_layer(s, chunks, contexts)
        return self.model.layers * t + _dot(s.head_s, h), self.model.layers * b + _dot(s.head_bytes, h)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["model"] = asdict(self.model)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LatencyModel:
        return cls(
            LlamaSpec(**d["model"]), d["fabric"], d["base_rows"], d["hbm_bytes_per_s"], d["hbm_capacity_bytes"],
            {int(k): ShareModel(**v) for k, v in d["shares"].items()},
            {int(k): v for k, v in d["fit_error"].items()}, d["activation_bytes"], d["points"],
        )


def composed_layer(s: ShareModel, chunks: Sequence[Chunk], contexts: Sequence[int]) -> tuple[float, float]:
    """(seconds, HBM bytes) of one layer of a mixed step composed from the prefill and
    decode fits of share `s` (`LatencyModel.composed`)."""
    x = prefill_features([*chunks, *((1, 0) for _ in contexts)])
    ctx = float(sum(contexts))
    return _dot(s.prefill_s, x) + s.decode_s[1] * ctx, _dot(s.prefill_bytes, x) + s.decode_bytes[1] * ctx


def _mixed_args(p: Sequence[int]) -> tuple[list[Chunk], list[int]]:
    """A mixed point (L, P, B, C) as (chunks, contexts)."""
    return [(p[0], p[1])], [p[3]] * p[2]


def _dot(c: Sequence[float], x: Sequence[float]) -> float:
    return float(sum(a * b for a, b in zip(c, x, strict=True)))


def default_cache_dir() -> str:
    """$RDU_SERVE_CACHE, else ~/.cache/rdu_compiler/serve."""
    return os.environ.get("RDU_SERVE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "rdu_compiler", "serve")


def build_latency_model(
    model: str | LlamaSpec,
    fabric: str,
    shares: Sequence[float],
    *,
    cache_dir: str | None = None,
    prefill_points: Sequence[int] = PREFILL_POINTS,
    decode_points: Sequence[tuple[int, int]] = DECODE_POINTS,
    head_points: Sequence[int] = HEAD_POINTS,
    prefill_check: Sequence[int] = PREFILL_CHECK,
    decode_check: Sequence[tuple[int, int]] = DECODE_CHECK,
    head_check: Sequence[int] = HEAD_CHECK,
    mixed_points: Sequence[tuple[int, int, int, int]] = MIXED_POINTS,
    mixed_check: Sequence[tuple[int, int, int, int]] = MIXED_CHECK,
    progress: Callable[[str], None] | None = None,
) -> LatencyModel:
    """Compile (or read from the cache) every phase point on every share and fit the forms.

    Args:
        model: a MODELS name or a LlamaSpec; fabric: preset name or .toml path;
        shares: fractions of the grid (rounded to rows; duplicates merged; 1.0 is always added
            for the chunked policy); *_points: fit points; *_check: validation points;
            mixed_points / mixed_check: (L, P, B, C) mixed-batch points, compiled on the
            whole grid only (no mixed points: `mixed` falls back to `composed`).
        progress: called with a line per phase point.

    Raises:
        RduError: unknown model, bad fabric or share, or a program the compiler refuses.
    """
    from rdu_compiler.errors import RduError

    if isinstance(model, str):
        if model not in MODELS:
            raise RduError(f"unknown model {model!r}; use one of {', '.join(MODELS)}")
        model = MODELS[model]
    cache = cache_dir or default_cache_dir()
    base = load_fabric(fabric)
    regs = {r.rows: r for r in (region(base, s, os.path.join(cache, "regions")) for s in [*shares, 1.0])}
    regions = [regs[k] for k in sorted(regs)]
    say = progress or (lambda _: None)
    meas: dict[tuple[str, tuple[int, ...]], list[dict[str, Any]]] = {}
    jobs = [("prefill", (p,)) for p in [*prefill_points, *prefill_check]]
    jobs += [("decode", tuple(p)) for p in [*decode_points, *decode_check]]
    jobs += [("head", (p,)) for p in [*head_points, *head_check]]
    for phase, point in jobs:
        say(f"{phase} {point} on {len(regions)} share(s)")
        meas[(phase, point)] = measure(model, regions, phase, point, cache)
    feats: dict[str, Callable[[tuple[int, ...]], list[float]]] = {
        "prefill": lambda p: prefill_features([(p[0], 0)]),
        "decode": lambda p: decode_features([p[1]] * p[0]),
        "head": lambda p: head_features(p[0]),
    }
    fit_pts = {"prefill": [(p,) for p in prefill_points], "decode": [tuple(p) for p in decode_points], "head": [(p,) for p in head_points]}
    check_pts = {"prefill": [(p,) for p in prefill_check], "decode": [tuple(p) for p in decode_check], "head": [(p,) for p in head_check]}
    out: dict[int, ShareModel] = {}
    errors: dict[int, dict[str, float]] = {}
    points: list[dict[str, Any]] = []
    for i, reg in enumerate(regions):
        coefs: dict[str, list[float]] = {}
        errors[reg.rows] = {}
        for phase in ("prefill", "decode", "head"):
            xs = [feats[phase](p) for p in fit_pts[phase]]
            coefs[phase + "_s"] = fit_nonneg(xs, [meas[(phase, p)][i]["estimated_s"] for p in fit_pts[phase]])
            coefs[phase + "_bytes"] = fit_nonneg(xs, [max(1.0, meas[(phase, p)][i]["hbm_bytes"]) for p in fit_pts[phase]])
            err = 0.0
            for p in check_pts[phase]:
                got = meas[(phase, p)][i]["estimated_s"]
                err = max(err, abs(_dot(coefs[phase + "_s"], feats[phase](p)) - got) / got)
            errors[reg.rows][phase] = err
        out[reg.rows] = ShareModel(reg.rows, reg.share, **coefs)
        for (phase, point), ms in meas.items():
            m = ms[i]
            points.append({"phase": phase, "point": list(point), "rows": reg.rows, "share": reg.share,
                           "estimated_s": m["estimated_s"], "hbm_bytes": m["hbm_bytes"],
                           "bounds": [s["bound"] for s in m["sections"]], "check": list(point) in [list(c) for c in check_pts[phase]]})
    full = regs[base.rows]
    if mixed_points:
        for point in [*mixed_points, *mixed_check]:
            say(f"mixed {tuple(point)} on the whole grid")
            meas[("mixed", tuple(point))] = measure(model, [full], "mixed", tuple(point), cache)
        _fit_mixed(out[base.rows], errors[base.rows], points, meas, mixed_points, mixed_check)
    biggest = max([*prefill_points, *prefill_check])
    layer_w = model.layer_params * model.dtype_bytes
    peak = max(m["hbm_peak_bytes"] for m in meas[("prefill", (biggest,))])
    return LatencyModel(model, fabric, base.rows, base.hbm.bytes_per_s, base.hbm.capacity_bytes, out, errors,
                        max(0, int(peak) - layer_w), points)


def _fit_mixed(s: ShareModel, errors: dict[str, float], points: list[dict[str, Any]],
               meas: dict[tuple[str, tuple[int, ...]], list[dict[str, Any]]],
               fit: Sequence[tuple[int, int, int, int]], check: Sequence[tuple[int, int, int, int]]) -> None:
    """Fit the mixed form on the compiled mixed points of the whole grid (`s`, in place);
    errors["mixed"]: the fit's max relative error on `check`; errors["mixed_composed"]: the
    composed estimate's on every mixed point (it uses none of them)."""
    def feats(p: Sequence[int]) -> list[float]:
        return mixed_features(*_mixed_args(p))

    got = {tuple(p): meas[("mixed", tuple(p))][0] for p in [*fit, *check]}
    s.mixed_s = fit_nonneg([feats(p) for p in fit], [got[tuple(p)]["estimated_s"] for p in fit])
    s.mixed_bytes = fit_nonneg([feats(p) for p in fit], [max(1.0, got[tuple(p)]["hbm_bytes"]) for p in fit])
    errors["mixed"] = max((abs(_dot(s.mixed_s, feats(p)) - got[tuple(p)]["estimated_s"]) / got[tuple(p)]["estimated_s"]
                           for p in check), default=0.0)
    errors["mixed_composed"] = 0.0
    for p, m in got.items():
        composed = composed_layer(s, *_mixed_args(p))[0]
        errors["mixed_composed"] = max(errors["mixed_composed"], abs(composed - m["estimated_s"]) / m["estimated_s"])
        points.append({"phase": "mixed", "point": list(p), "rows": s.rows, "share": s.share, "estimated_s": m["estimated_s"],
                       "hbm_bytes": m["hbm_bytes"], "bounds": [x["bound"] for x in m["sections"]],
                       "check": list(p) in [list(c) for c in check], "composed_s": composed,
                       "fitted_s": _dot(s.mixed_s, feats(p))})


def save(lm: LatencyModel, path: str) -> None:
    """Write `lm` as JSON (temporary file, then rename)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(lm.to_json(), f, indent=1)
    os.replace(tmp, path)


def load(path: str) -> LatencyModel:
    with open(path, encoding="utf-8") as f:
        return LatencyModel.from_json(json.load(f))
