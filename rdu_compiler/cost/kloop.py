"""The time of a kernel-looped call (`rdu-kernel-loop`): launches and fills paid once.

Without looping every section pays, each time it runs (`cost.model.section_cost`),

    total = steady + fill + launch,   launch = P + A

with P = `[launch].program_load_s` and A = `[launch].argument_load_s` (SN40L §IV-D: Program
Load -> Argument Load -> Kernel Execute [P]; the durations 10 us and 1 us are sn40l.toml's
modelling choices [NF]), steady = the section's max over its resources, fill = its
pipeline fill (first tile through the stages).

A loop of N trips over a body of k sections (s_j, f_j: steady state and fill of body
section j) is one call:

    T_loop = sum_j (P + A + f_j)  +  N sum_j s_j  +  (N - 1) k R

- the body's programs and arguments are loaded once per looped call: the iterations run
  the same programs, and each iteration's weights are addressed by the loop index
  (Koeplinger et al.'s stacked parameters), so no argument load per iteration [P: the
  paper's transformation; the cost of the loop-index address update is taken as 0, NF];
- the fill is exposed once per body section: the pipelined outer loop streams iteration
  t + 1's first tiles (its weights) while iteration t finishes [NF: the paper's
  "pipelined outer loop"; an upper bound on the overlap];
- R: the cost of switching between the body's sections inside an iteration when k > 1
  (their configurations stay resident, switched by the on-chip orchestrator: SN40L §IV-D
  allows hardware-orchestrated launch) [NF]; default 0 s, `section_switch_s` to sweep it
  (R = P + A gives back every launch: the looped call then saves only fills);
- the collectives between sections (`cost.node`) and the call's one sync are unchanged
  (the node model already pays sync once per call).

So the loop saves (N - 1) sum_j (P + A - R + f_j). In the report each section of an
iteration t >= 1 keeps its steady state and gets launch_s = R (k > 1; 0 when k = 1),
fill_s = 0 and `unlooped` (its costs without the loop); totals are re-summed, and `report["kernel_loops"]`
lists each loop with `launches_saved` and the seconds saved (launch, fill).
"""

from __future__ import annotations

from typing import Any

from xdsl.dialects import func
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp

from rdu_compiler.dialects import rdu
from rdu_compiler.fabric import Fabric
from rdu_compiler.passes.rdu_kernel_loop import LOOP_ATTR, loops_of

#: R, seconds per body-section switch inside an iteration [NF]: see the module docstring
SECTION_SWITCH_S = 0.0

FORMULA = "T_loop = sum_j (P + A + f_j) + N sum_j s_j + (N - 1) k R"


def apply_kernel_loops(report: dict[str, Any], module: ModuleOp, fabric: Fabric,
                       section_switch_s: float = SECTION_SWITCH_S) -> None:
    """Charge `report` (from `cost.analysis.build_report`, which calls this; before
    `cost.node`) for the module's kernel loops (module docstring); calling it again with
    another `section_switch_s` re-charges from the unlooped costs. A module the pass did
    not run on is left as it is. Raises: RduError: the loop annotation is stale (`loops_of`)."""
    fn = next(op for op in module.ops if isinstance(op, func.FuncOp))
    loops = loops_of(fn)
    if loops is None:
        return
    sections = [op for op in fn.body.block.ops if isinstance(op, rdu.SectionOp)]
    for entry in report["sections"]:  # charged before (another R): start from the unlooped costs
        entry["cost"].update(entry["cost"].pop("unlooped", {}))
        entry["cost"].pop("looped", None)
    before = sum(e["cost"]["total_s"] for e in report["sections"])
    per_loop = [{**lp.to_dict(), "launch_saved_s": 0.0, "fill_saved_s": 0.0} for lp in loops]
    for op, entry in zip(sections, report["sections"], strict=True):
        tag = op.attributes.get(LOOP_ATTR)
        if not isinstance(tag, DenseArrayBase):
            continue
        n, t, _ = (int(x) for x in tag.get_values())
        if t == 0:
            continue
        c = entry["cost"]
        switch = section_switch_s if loops[n].sections > 1 else 0.0
        per_loop[n]["launch_saved_s"] += c["launch_s"] - switch
        per_loop[n]["fill_saved_s"] += c["fill_s"]
        c["unlooped"] = {k: c[k] for k in ("total_s", "launch_s", "fill_s")}
        c["total_s"] = c["total_s"] - c["launch_s"] - c["fill_s"] + switch
        c["launch_s"], c["fill_s"], c["looped"] = switch, 0.0, True
    totals = report["totals"]
    totals["estimated_s"] = sum(s["cost"]["total_s"] for s in report["sections"])
    totals["launch_s"] = sum(s["cost"]["launch_s"] for s in report["sections"])
    roof = report.get("roofline", {}).get("bound_s", 0.0)
    report["roofline_fraction"] = roof / totals["estimated_s"] if totals["estimated_s"] else 0.0
    saved = sum(lp.launches_saved for lp in loops)
    report["kernel_loops"] = {
        "loops": per_loop,
        "count": len(loops),
        "section_launches_unlooped": len(sections),
        "section_launches": len(sections) - saved,
        "launches_saved": saved,
        "saved_s": before - totals["estimated_s"],
        "section_switch_s": section_switch_s,
        "formula": FORMULA,
        "note": (f"{len(loops)} loop(s): {saved} of {len(sections)} section launches saved"
                 if loops else "0 loops: no run of >= 2 structurally identical layers of sections was found (each "
                 "section is launched once per call, as without --kernel-looping)"),
    }
