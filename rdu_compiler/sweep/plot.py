"""Pictures of a sweep: a figure against an axis (one line per other-axes combination), and
the Pareto front of two figures (both minimised)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402


def pareto_front(rows: list[dict[str, Any]], a: str, b: str) -> list[dict[str, Any]]:
    """Rows not dominated in (a, b), both minimised (a row dominates another when it is <=
    in both and < in one); failed rows are left out. Sorted by `a`."""
    ok = sorted((r for r in rows if not r.get("error") and r.get(a) is not None and r.get(b) is not None),
                key=lambda r: (r[a], r[b]))
    front: list[dict[str, Any]] = []
    for r in ok:
        if not front or r[b] < front[-1][b]:
            front.append(r)
    return front


def plot_axis(rows: list[dict[str, Any]], axis: str, figure: str, path: str | Path) -> Path:
    """`figure` against `axis`, one line per combination of the other inputs; PNG at `path`."""
    inputs = [k for k in rows[0] if k not in (axis, figure, "key", "index", "error") and not _is_figure(k)] if rows else []
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        if not r.get("error") and r.get(figure) is not None:
            groups.setdefault(tuple(r.get(k) for k in inputs), []).append(r)
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, rs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        rs = sorted(rs, key=lambda r: r[axis])
        ax.plot([r[axis] for r in rs], [r[figure] for r in rs], marker="o",
                label=", ".join(f"{k}={v}" for k, v in zip(inputs, label, strict=True)) or figure)
    ax.set_xlabel(axis)
    ax.set_ylabel(figure)
    if len(groups) <= 12:
        ax.legend(fontsize=6)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_pareto(rows: list[dict[str, Any]], a: str, b: str, path: str | Path) -> Path:
    """Every job in (a, b), the Pareto front drawn and its jobs labelled by index; PNG."""
    ok = [r for r in rows if not r.get("error") and r.get(a) is not None and r.get(b) is not None]
    front = pareto_front(rows, a, b)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([r[a] for r in ok], [r[b] for r in ok], s=12, c="#999999", label="jobs")
    ax.plot([r[a] for r in front], [r[b] for r in front], "o-", c="#c44e52", label="Pareto front")
    for r in front:
        ax.annotate(str(r["index"]), (r[a], r[b]), fontsize=7)
    ax.set_xlabel(a)
    ax.set_ylabel(b)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _is_figure(key: str) -> bool:
    from rdu_compiler.sweep.job import FIGURES

    return key in FIGURES
