"""Pictures of a CoE study (`rdu-coe --plot DIR`), with matplotlib's Agg backend:

- `breakdown.png`: per request (the first `max_requests`), router, switch and execution
  time stacked, one panel per machine, on a shared time axis (the paper's Fig. 1 view);
- `footprint.png`: machines needed as the number of experts grows (RDU nodes against GPU
  boxes with experts in HBM and in host memory), when the study compared GPUs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from rdu_compiler.errors import RduError  # noqa: E402

PARTS = (("router_s", "router", "#4c72b0"), ("switch_s", "switch", "#dd8452"), ("exec_s", "execution", "#55a868"))


def write_coe_plots(result: dict[str, Any], out_dir: str, max_requests: int = 60) -> list[str]:
    """Write the pictures of `result` (`study.run_study`'s dict) into `out_dir`; returns their paths.

    Raises:
        RduError: the folder cannot be created or written.
    """
    machines = ["rdu", *result["speedup"]]
    figures: list[tuple[str, Any]] = [("breakdown.png", _breakdown(result, machines, max_requests))]
    if result.get("footprint_sweep"):
        figures.append(("footprint.png", _footprint(result["footprint_sweep"])))
    try:
        os.makedirs(out_dir, exist_ok=True)
        paths = []
        for name, fig in figures:
            fd, tmp = tempfile.mkstemp(prefix=".rdu-coe-", suffix=".png", dir=out_dir)
            os.close(fd)
            fig.savefig(tmp, dpi=110)
            os.replace(tmp, Path(out_dir) / name)
            paths.append(str(Path(out_dir) / name))
    except OSError as e:
        raise RduError(f"--plot {out_dir}: cannot write the pictures ({e}); pick a writable folder") from None
    finally:
        for _, fig in figures:
            plt.close(fig)
    return paths


def _breakdown(result: dict[str, Any], machines: list[str], n: int) -> Any:
    fig, axes = plt.subplots(len(machines), 1, figsize=(10, 1.8 + 1.6 * len(machines)), sharex=True, squeeze=False)
    for ax, m in zip(axes[:, 0], machines, strict=True):
        reqs = result[m]["requests"][:n]
        bottom = [0.0] * len(reqs)
        for key, label, color in PARTS:
            vals = [r[key] * 1e3 for r in reqs]
            ax.bar(range(len(reqs)), vals, bottom=bottom, color=color, label=label, width=0.85)
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        ax.set_ylabel("ms")
        ax.set_title(f"{result[m]['machine']}: hit rate {result[m]['hit_rate']:.1%}", fontsize=9, loc="left")
    axes[0, 0].legend(fontsize=8, ncols=3, loc="upper right")
    axes[-1, 0].set_xlabel(f"request (first {min(n, result['requests'])} of {result['requests']})")
    fig.tight_layout()
    return fig


def _footprint(sweep: dict[str, list[dict[str, Any]]]) -> Any:
    fig, ax = plt.subplots(figsize=(7, 4))
    first = next(iter(sweep.values()))
    ax.plot([r["experts"] for r in first], [r["rdu_nodes"] for r in first], "o-", label="SN40L nodes (experts in DDR)")
    for gpu, rows in sweep.items():
        xs = [r["experts"] for r in rows]
        ax.plot(xs, [r["gpu_boxes_hbm"] for r in rows], "s--", label=f"{gpu} boxes, experts in HBM")
        ax.plot(xs, [r["gpu_boxes_host"] for r in rows], "^:", label=f"{gpu} boxes, experts in host memory")
    hbm = {tuple(r["gpu_boxes_hbm"] for r in rows) for rows in sweep.values()}
    if len(sweep) > 1 and len(hbm) == 1:
        ax.set_title("the GPU boxes have equal HBM: their 'experts in HBM' lines coincide", fontsize=8)
    ax.set_xlabel("experts")
    ax.set_ylabel("machines")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
