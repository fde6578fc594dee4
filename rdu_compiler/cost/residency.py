"""Hash-probe indexes kept in PMUs from one call of a program to the next.

`rdu-tile{resident_index=true}` (`compile(..., resident_index=True)`) puts every probe's
cuckoo index in its kernel's PMUs and marks it `RESIDENT_INDEX_ATTR`: the program states
that those PMUs keep the index between calls (a serving loop over batches). Per call, the
index is then not read from HBM/DDR (`kernel_traffic` gives it 0 bytes, so the report's
per-call `hbm_bytes`, `ddr_bytes`, PMU bytes and time exclude it); its load is the first
call's, reported here.

First-call load: each index's bytes from its tier (`rdu.load`'s tier) through the AGCUs
into its PMUs, all indexes at once; load_s = max(HBM bytes / HBM bytes/s, DDR bytes / DDR
bytes/s, all bytes / AGCU bytes/s, per index: bytes / (its PMUs x PMU bytes/cycle x clock)).

Held PMUs: the PMUs of a resident index (its buffer as allocated: its capacity need plus
the spare PMUs rdu-allocate gives it for the probes' reads) are held for the program's
lifetime: `rdu-allocate` gives every other section the fabric's PMUs less those,
and refuses a section that does not fit beside them. This counts PMUs, not sites: the
placer does not keep those sites out of the other sections (not done).
"""

from __future__ import annotations

import math
from typing import Any

from rdu_compiler.dialects import rdu
from rdu_compiler.fabric import Fabric
from rdu_compiler.kernel.traffic import itemsize, operand_pmus, resident_across_calls


def resident_indexes(sections: list[rdu.SectionOp], fabric: Fabric) -> list[dict[str, Any]]:
    """Per index kept resident across calls: kernel label, section, bytes, tier it is loaded
    from ("hbm"/"ddr"), PMUs its buffer holds."""
    out = []
    for s in sections:
        for k in s.kernels():
            if not resident_across_calls(k):
                continue
            index = k.inputs[1]
            owner = index.owner
            tier = str(owner.tier.data.value) if isinstance(owner, rdu.LoadOp) else "hbm"
            pmus = (k.buffers.data[1].pmus.data if k.buffers is not None
                    else operand_pmus(k, k.tile_sizes, fabric.pmu.capacity_bytes)[1])  # as rdu-allocate holds them
            out.append({"kernel": k.label, "section": s.sym_name.data, "tier": tier, "pmus": pmus,
                        "bytes": math.prod(rdu.shape_of(index.type)) * itemsize(index.type)})
    return out


def residency_report(sections: list[rdu.SectionOp], fabric: Fabric, per_call_s: float) -> dict[str, Any]:
    """`report["resident_index"]`: the indexes, the first call's load (bytes per tier,
    seconds), the per-call estimate (`per_call_s`, which excludes the load) and the first
    call's (`per_call_s + load_s`)."""
    indexes = resident_indexes(sections, fabric)
    by_tier = {t: sum(x["bytes"] for x in indexes if x["tier"] == t) for t in ("hbm", "ddr")}
    agcu = fabric.agcu.count * fabric.agcu.bytes_per_cycle * fabric.clock_hz
    pmu = fabric.pmu.bytes_per_cycle * fabric.clock_hz
    load_s = max([by_tier["hbm"] / fabric.hbm.bytes_per_s, by_tier["ddr"] / fabric.ddr.bytes_per_s,
                  sum(by_tier.values()) / agcu, *(x["bytes"] / (x["pmus"] * pmu) for x in indexes if x["pmus"])])
    return {
        "assumption": "each hash probe's index stays in its PMUs across calls of this program",
        "indexes": indexes,
        "held_pmus": sum(x["pmus"] for x in indexes),
        "first_call_load_bytes": by_tier,
        "first_call_load_s": load_s,
        "per_call_s": per_call_s,
        "first_call_s": per_call_s + load_s,
    }
