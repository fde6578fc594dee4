"""DLRM inference on one sn40l socket (issue 16): estimated time per batch, what binds, and
bytes per tier, at batch 1, 128 and 2048, for the full Criteo-Kaggle tables (33.8 M rows,
2.0 GiB fp32) and for the same model with its tables hashed into 4096 fixed rows
(DLRM's ``--max-ind-range``: the collision baseline; examples/dlrm.py).

`--tables collisionless`: the full tables behind collisionless tables (capacity = the table's
rows, so each index has the power-of-two bucket count the table would allocate; the IDs are
raw 64-bit values): one hash_probe kernel per table (both candidate buckets, 64 B each, per
lookup) before the row gathers.

Every figure comes from the static cost model (`program.report`), compiled on the meta
device (shapes only; the cost model does not read values), so none depends on the machine's
load. "binds": the resource that bounds the sections, weighted by their time (one entry per
resource with its share of the total); gathers are charged at the tier's burst
(`gather_bytes`: requested and charged).

    python benchmarks/dlrm.py [--batches 1 128 2048] [--fabric sn40l] [--tables full|hashed|both|collisionless|all]
        [--tiering] [--zipf 1.05] [--tier-rows HBM_BYTES ...] [--resident-index] [--out results.json]

`--resident-index`: the collisionless model with tables capped at 4,096 rows compiled with and
without `resident_index` (every cuckoo index in its probe's PMUs across calls): per-call time
and HBM bytes, the first call's load; then the full tables with it (refused: their large
indexes do not fit a probe's buffer).

`--tier-rows B ...`: the full tables compiled with and without `rdu-tier-rows` (hot rows
of every table in B bytes of HBM, the rest in DDR, under the stated Zipf(`--zipf`) law):
the whole program's estimated time, bytes per tier and what binds, per budget.

`--tiering` adds the cost model's placement of the full tables' rows (`cost.tiering`) under
a stated Zipf(`--zipf`) law per table (an assumption, not Criteo's measured profile), for
SRAM / HBM budgets of (0, all), (64 MiB, all), (0, 256 MiB), (64 MiB, 256 MiB) and (0, 0):
the gather seconds per batch, bytes per tier and the binding tier; then the cuckoo indexes a
collisionless table would add (`place_indexes`: whole indexes densest first, 2 bucket probes
of 64 B per lookup) with 0 or 64 MiB of SRAM for them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

import rdu_compiler
from rdu_compiler.errors import RduError

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("dlrm_example", ROOT / "examples" / "dlrm.py")
assert _spec and _spec.loader
dlrm: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dlrm)


def figure(batch: int, max_ind_range: int | None, fabric: str, collisionless: bool = False,
           tier_rows: dict[str, Any] | None = None, resident_index: bool = False) -> dict[str, Any]:
    """One compile on meta: the report's totals, and the bound resources by time share.
    `collisionless`: the tables behind CollisionlessTables (hash_probe kernels).
    `tier_rows`: `compile(tier_rows=...)` (rdu-tier-rows: hot rows in HBM, the rest in DDR).
    `resident_index`: `compile(resident_index=True)` (indexes kept in PMUs across calls)."""
    with torch.device("meta"):
        model, inputs = dlrm.get_model(batch=batch, max_ind_range=max_ind_range, collisionless=collisionless)
    t0 = time.perf_counter()
    program = rdu_compiler.compile(model, inputs, fabric=fabric, opt_level=1, tier_rows=tier_rows,
                                   resident_index=resident_index)
    compile_s = time.perf_counter() - t0
    rep = program.report
    tot = rep["totals"]
    bound: Counter[str] = Counter()
    terms: Counter[str] = Counter()
    for s in rep["sections"]:
        bound[s["cost"]["bound"]] += s["cost"]["total_s"]
        for t in ("compute_s", "pmu_s", "hbm_s", "ddr_s", "agcu_s", "network_s", "fill_s", "launch_s"):
            terms[t] += s["cost"][t]
    total = tot["estimated_s"]
    kinds = tot["kernel_kinds"]
    return {
        "batch": batch,
        "tables": ("collisionless " if collisionless else "") + ("full" if max_ind_range is None else f"hashed {max_ind_range}"),
        "tier_rows": tier_rows,
        "table_bytes_per_tier": rep.get("tiering", {}).get("stored_bytes"),
        "estimated_s": total,
        "per_sample_s": total / batch,
        "binds": {k: round(v / total, 3) for k, v in bound.most_common()},
        "terms_s": dict(terms),  # summed over sections; total = sum of max(steady terms) + fill + launch
        "launch_s": tot["launch_s"],
        "sections": tot["sections"],
        "kernels": tot["kernels"],
        "scatter_kernels": kinds.get("scatter", 0),
        "hash_probe_kernels": kinds.get("hash_probe", 0),
        "hbm_bytes": tot["hbm_bytes"],
        "ddr_bytes": tot["ddr_bytes"],
        "gather_bytes": tot.get("gather_bytes"),
        "hbm_peak_bytes": tot["hbm_peak_bytes"],
        "ddr_peak_bytes": tot["ddr_peak_bytes"],
        "roofline_bound": rep["roofline"]["bound"],
        "probe": _probe_terms(rep),
        "resident_index": {k: v for k, v in rep["resident_index"].items() if k != "indexes"} if "resident_index" in rep else None,
        "compile_s": round(compile_s, 1),
    }


def _probe_terms(rep: dict[str, Any]) -> dict[str, Any]:
    """The hash_probe kernels' integer ops (all of them), and the largest compute / PMU /
    kernel time of one probe (seconds; the cost model's `compute_s`, `pmu_s`, `time_s`)."""
    probes = [(k, c) for s in rep["sections"] for k, c in zip(s["kernels"], s["cost"]["kernels"], strict=True)
              if k["kind"] == "hash_probe"]
    return {"int_ops": sum(k.get("int_ops", 0) for k, _ in probes),
            **{f"max_{t}": max((c[t] for _, c in probes), default=0.0) for t in ("compute_s", "pmu_s", "time_s")}}


def tiering(batch: int, zipf_s: float, fabric_name: str) -> list[dict[str, Any]]:
    """The full Criteo tables' rows placed by the cost model for a few budgets."""
    from rdu_compiler.cost.tiering import TableProfile, place_indexes, place_tables
    from rdu_compiler.fabric import load_fabric

    fabric = load_fabric(fabric_name)
    tables = [TableProfile(f"t{i}", rows=n, row_bytes=16 * 4, lookups=batch * dlrm.BAG, zipf_s=zipf_s)
              for i, n in enumerate(dlrm.CRITEO_KAGGLE_ROWS)]
    total = sum(n for n in dlrm.CRITEO_KAGGLE_ROWS) * 64
    out = []
    for sram, hbm in [(0, total), (64 << 20, total), (0, 256 << 20), (64 << 20, 256 << 20), (0, 0)]:
        plan = place_tables(tables, fabric, sram, hbm)
        out.append({"batch": batch, "zipf_s": zipf_s, "sram_budget": sram, "hbm_budget": hbm,
                    "stored_bytes": plan.stored_bytes, "gather_bytes": plan.gather_bytes,
                    "seconds": plan.seconds, "gather_s": plan.gather_s, "binds": plan.binds})
    for sram in (0, 64 << 20):  # a collisionless table's cuckoo index, probed before each row gather
        probe = place_indexes(tables, fabric, sram, fabric.hbm.capacity_bytes)
        out.append({"batch": batch, "zipf_s": zipf_s, "index_sram_budget": sram, "index_tiers": dict(Counter(probe.tier.values())),
                    "index_stored_bytes": probe.stored_bytes, "probe_bytes": probe.probe_bytes, "seconds": probe.seconds,
                    "probe_s": probe.probe_s, "binds": probe.binds})
    return out


def small_hbm_fabric(preset: str, capacity: int) -> str:
    """A copy of the preset's spec with `[hbm] capacity_bytes = capacity`, written to a
    temporary .toml; returns its path."""
    import re
    import tempfile
    from importlib import resources

    text = resources.files("rdu_compiler.fabric.presets").joinpath(f"{preset}.toml").read_text()
    text, n = re.subn(r"(\[hbm\]\n(?:#.*\n)*capacity_bytes = )\d+", rf"\g<1>{capacity}", text, count=1)
    assert n == 1, "no [hbm] capacity_bytes in the preset"
    text = text.replace(f'name = "{preset}"', f'name = "{preset}-hbm{capacity >> 20}m"', 1)
    path = Path(tempfile.mkdtemp()) / f"{preset}-hbm{capacity >> 20}m.toml"
    path.write_text(text)
    return str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or '').splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 128, 2048])
    ap.add_argument("--fabric", default="sn40l")
    ap.add_argument("--tables", choices=["full", "hashed", "both", "collisionless", "all"], default="both")
    ap.add_argument("--tiering", action="store_true")
    ap.add_argument("--zipf", type=float, default=1.05)
    ap.add_argument("--tier-rows", type=int, nargs="+", default=[], metavar="HBM_BYTES")
    ap.add_argument("--hbm-capacity", type=int, default=None, metavar="BYTES",
                    help="compile on a copy of --fabric whose HBM holds only BYTES (a stand-in for HBM that other "
                         "tensors fill): whole tables that do not fit then go to DDR")
    ap.add_argument("--resident-index", action="store_true",
                    help="collisionless tables capped at --max-ind-range rows, compiled with and without "
                         "resident_index (indexes kept in PMUs across calls); the full tables' refusal")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.hbm_capacity is not None:
        args.fabric = small_hbm_fabric(args.fabric, args.hbm_capacity)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    caps: list[Any] = {"full": [None], "hashed": [dlrm.MAX_IND_RANGE], "both": [None, dlrm.MAX_IND_RANGE],
                       "collisionless": ["collisionless"], "all": [None, dlrm.MAX_IND_RANGE, "collisionless"]}[args.tables]
    rows: list[dict[str, Any]] = []
    tiers: list[dict[str, Any]] = []
    if args.tiering:
        for b in args.batches:
            for t in tiering(b, args.zipf, args.fabric):
                tiers.append(t)
                if "probe_bytes" in t:
                    p = t["probe_bytes"]
                    print(f"probes  B={b:<5} index SRAM budget {t['index_sram_budget'] >> 20:>4} MiB: indexes per tier {t['index_tiers']}, "
                          f"stored {t['index_stored_bytes']['hbm'] / 2**30:.2f} GiB HBM; probes SRAM {p['sram'] / 1e3:.1f} kB "
                          f"HBM {p['hbm'] / 1e3:.1f} kB: {t['probe_s'] * 1e6:.3f} us, binds {t['binds']}", flush=True)
                    continue
                g = t["gather_bytes"]
                print(f"tiering B={b:<5} SRAM {t['sram_budget'] >> 20:>4} MiB HBM {t['hbm_budget'] >> 20:>6} MiB: "
                      f"gathers SRAM {g['sram'] / 1e3:9.1f} kB HBM {g['hbm'] / 1e3:9.1f} kB DDR {g['ddr'] / 1e3:9.1f} kB  "
                      f"{t['gather_s'] * 1e6:8.3f} us, binds {t['binds']}", flush=True)
        caps = [] if args.tables == "both" and "--tables" not in (argv or sys.argv) else caps
    if args.tier_rows:
        caps = []
        for b in args.batches:
            for budget in [None, *args.tier_rows]:
                row = figure(b, None, args.fabric, tier_rows=None if budget is None else {"hbm_bytes": budget, "zipf": args.zipf})
                rows.append(row)
                g, st = row["gather_bytes"], row["table_bytes_per_tier"] or {}
                print(f"tier-rows {'none' if budget is None else f'{budget >> 20} MiB':>8}  B={b:<5} {row['estimated_s'] * 1e6:9.1f} us  "
                      f"HBM {row['hbm_bytes'] / 1e6:9.3f} MB  DDR {row['ddr_bytes'] / 1e6:9.3f} MB  "
                      f"gathers HBM {g['hbm']['charged'] / 1e6:.3f} DDR {g['ddr']['charged'] / 1e6:.3f} MB  "
                      f"tables HBM {st.get('hbm', 0) / 2**20:.0f} MiB DDR {st.get('ddr', 0) / 2**20:.0f} MiB  "
                      f"HBM peak {row['hbm_peak_bytes'] / 2**20:.0f} MiB DDR peak {row['ddr_peak_bytes'] / 2**20:.0f} MiB  "
                      f"binds {row['binds']}  (compile {row['compile_s']} s)", flush=True)
    if args.resident_index:
        caps = []
        for b in args.batches:
            for resident in (False, True):
                row = figure(b, dlrm.MAX_IND_RANGE, args.fabric, collisionless=True, resident_index=resident)
                rows.append(row)
                res = row["resident_index"] or {}
                first = (f"first call +{res['first_call_load_s'] * 1e6:.2f} us "
                         f"({res['first_call_load_bytes']['hbm'] / 1e6:.2f} MB, {res['held_pmus']} PMUs held)" if res else "")
                print(f"resident_index={resident!s:<5} B={b:<5} {row['estimated_s'] * 1e6:9.1f} us per call  "
                      f"HBM {row['hbm_bytes'] / 1e6:9.3f} MB  probes: max compute {row['probe']['max_compute_s'] * 1e6:.3f} us "
                      f"pmu {row['probe']['max_pmu_s'] * 1e6:.3f} us  {first}  binds {row['binds']}  "
                      f"(compile {row['compile_s']} s)", flush=True)
            try:
                figure(b, None, args.fabric, collisionless=True, resident_index=True)
                print(f"resident_index full tables B={b}: compiled", flush=True)
            except RduError as e:
                print(f"resident_index full tables B={b}: refused: {str(e).splitlines()[0]}", flush=True)
    for cap in caps:
        for b in args.batches:
            row = figure(b, None, args.fabric, collisionless=True) if cap == "collisionless" else figure(b, cap, args.fabric)
            rows.append(row)
            g = row["gather_bytes"] or {}
            hbm_g = g.get("hbm", {})
            print(
                f"{row['tables']:>11}  B={b:<5} {row['estimated_s'] * 1e6:9.1f} us  ({row['per_sample_s'] * 1e9:8.1f} ns/sample)  "
                f"HBM {row['hbm_bytes'] / 1e6:9.2f} MB  DDR {row['ddr_bytes'] / 1e6:7.2f} MB  "
                f"gathers {hbm_g.get('requested', 0) / 1e6:.2f} -> {hbm_g.get('charged', 0) / 1e6:.2f} MB  "
                f"binds {row['binds']}  ({row['sections']} sections, {row['kernels']} kernels, compile {row['compile_s']} s)"
                + (f"  probes: {row['probe']['int_ops'] / 1e6:.3f} M int ops, max compute {row['probe']['max_compute_s'] * 1e9:.1f} ns "
                   f"pmu {row['probe']['max_pmu_s'] * 1e9:.1f} ns" if row["hash_probe_kernels"] else ""),
                flush=True,
            )
    if args.out:
        args.out.write_text(json.dumps({"commit": commit, "fabric": args.fabric, "rows": rows, "tiering": tiers}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
