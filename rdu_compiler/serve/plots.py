"""Plots of one simulation (PNG, matplotlib Agg): TTFT and TBT CDFs, and the prefill share
over time (spatial policies)."""

from __future__ import annotations

import os
from typing import Any


def write_plots(result: Any, base_rows: int, directory: str) -> list[str]:
    """Write ttft_cdf.png, tbt_cdf.png and (spatial policies) split.png under `directory`
    (created); each file is written to a temporary and renamed. Returns the paths.

    `result` is a `sim.SimResult` or `node.NodeResult`; `base_rows` the fabric's rows (for the share axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    os.makedirs(directory, exist_ok=True)
    done = [r for r in result.records if r.finish is not None]
    series = {
        "ttft_cdf.png": ("TTFT (s)", [r.ttft for r in done]),
        "tbt_cdf.png": ("time between tokens (s)", [g for r in done for g in r.tbts]),
    }
    paths: list[str] = []
    for name, (label, values) in series.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        if values:
            v = np.sort(np.asarray(values))
            ax.plot(v, np.arange(1, len(v) + 1) / len(v))
        ax.set_xlabel(label)
        ax.set_ylabel("fraction")
        ax.set_title(f"{result.policy}: {label}")
        ax.grid(alpha=0.3)
        paths.append(_save(fig, os.path.join(directory, name)))
        plt.close(fig)
    if getattr(result, "splits", None):  # a node.NodeResult has none
        fig, ax = plt.subplots(figsize=(6, 4))
        end = max((r.finish or 0.0) for r in result.records)
        ts = [t for t, _ in result.splits] + [end]
        ys = [rows / base_rows for _, rows in result.splits]
        ax.step(ts, [*ys, ys[-1]], where="post")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("prefill share of the grid")
        ax.set_ylim(0, 1)
        ax.set_title(f"{result.policy}: spatial split")
        ax.grid(alpha=0.3)
        paths.append(_save(fig, os.path.join(directory, "split.png")))
        plt.close(fig)
    return paths


def _save(fig: Any, path: str) -> str:
    tmp = f"{path}.tmp{os.getpid()}.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return path
