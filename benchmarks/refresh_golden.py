"""Refresh testsuite/golden/counts.json: the compiler's decisions on reference models.

For GPT-2 and Llama (the 2-layer examples) on `tiny` and `sn40l` at -O0 and -O1: sections,
kernels by pattern, PCUs and PMUs assigned (summed over sections), bytes per tier and peak
footprints. `testsuite/models/test_golden.py` compiles the same and fails on any change,
so a change in the compiler's decisions shows up in review as a diff of this file.

    python benchmarks/refresh_golden.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "testsuite" / "golden" / "counts.json"
MODELS = ("gpt2_2layer", "llama_2layer")
FABRICS = ("tiny", "sn40l")


def counts(model: str, fabric: str, opt_level: int) -> dict[str, Any]:
    import rdu_compiler
    from rdu_compiler.frontend.torch.model_file import load_model_file

    module, inputs = load_model_file(ROOT / "examples" / f"{model}.py")
    return counts_of(rdu_compiler.compile(module, inputs, fabric=fabric, opt_level=opt_level).report)


def counts_of(report: dict[str, Any]) -> dict[str, Any]:
    """The golden counts of a compile report."""
    t = report["totals"]
    return {
        "sections": t["sections"],
        "kernels": t["kernels"],
        "kernel_kinds": dict(sorted(t["kernel_kinds"].items())),
        "pcus": sum(s["pcus"] for s in report["sections"]),
        "pmus": sum(s["pmus"] for s in report["sections"]),
        "hbm_bytes": t["hbm_bytes"],
        "ddr_bytes": t["ddr_bytes"],
        "hbm_peak_bytes": t["hbm_peak_bytes"],
        "ddr_peak_bytes": t["ddr_peak_bytes"],
    }


def all_counts() -> dict[str, Any]:
    return {f"{m}/{f}/O{o}": counts(m, f, o) for m in MODELS for f in FABRICS for o in (0, 1)}


def main() -> None:
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(all_counts(), indent=2) + "\n")
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
