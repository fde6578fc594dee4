"""Where to cut a kernel sequence into pipeline stages (plain data; `rdu-pipeline` uses it).

Input: `work[i]`, the estimated seconds of kernel i (program order), and `crossing[c]` for
c = 1..n-1, the bytes of activations that cross a cut placed just before kernel c
(`crossing[0]` is unused). Output: p - 1 cut positions, each stage a contiguous,
non-empty run of kernels.

The rule, in two steps:

1. W* = the smallest possible slowest stage: min over partitions of max over stages of
   sum(work) (the pipeline's throughput is set by its slowest stage).
2. Among the partitions whose slowest stage is within `imbalance` of W*
   (max stage work <= (1 + imbalance) W*), take the one with the fewest bytes crossing
   its cuts (sum of crossing at the cuts), then the smaller slowest stage, then the
   earlier cuts.

Step 2 is what puts the cuts of a transformer on decoder-layer boundaries: there only the
residual stream crosses, inside a layer the residual and the layer's partial results do.
`imbalance` = 0.25 by default, a modelling choice [NF]: Megatron-LM gives each stage whole
layers and accepts the embedding and LM head's extra work on the first and last stage;
for Llama-2-7B's LM head (0.65 of a layer) at 8 stages of 4 layers the last stage is 14%
above W*, and 0.25 admits that while refusing to leave a stage near-empty.

Step 1 bisects on the cap (greedy check, O(n) each); step 2 is a dynamic program over
(stage, end kernel) visiting only stages within the cap: about O(n^2) time.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

#: Default tolerance of step 2 (see the module docstring) [NF].
IMBALANCE = 0.25


@dataclass(frozen=True)
class StagePlan:
    """The chosen cuts: stage s runs kernels [starts[s], starts[s + 1]) (starts[0] = 0).

    stage_work: estimated seconds per stage; crossing_bytes: bytes crossing each cut;
    best_max_work: W*, the smallest slowest stage any partition has.
    """

    starts: tuple[int, ...]
    stage_work: tuple[float, ...]
    crossing_bytes: tuple[int, ...]
    best_max_work: float


def _stages_needed(work: Sequence[float], cap: float) -> int:
    """Fewest contiguous stages with no stage above `cap` (greedy; inf if a kernel exceeds it)."""
    count, acc = 1, 0.0
    for w in work:
        if w > cap:
            return 1 << 62
        if acc + w > cap:
            count, acc = count + 1, 0.0
        acc += w
    return count


def _min_max_work(work: Sequence[float], p: int) -> float:
    """W*: the smallest max stage work over partitions into p stages (bisection on the cap;
    a partition into fewer stages splits further without raising its max)."""
    lo, hi = max(work, default=0.0), sum(work)
    for _ in range(100):
        if hi - lo <= 1e-12 * hi:
            break
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if _stages_needed(work, mid) <= p else (mid, hi)
    return hi


def plan_stages(work: Sequence[float], crossing: Sequence[int], stages: int, imbalance: float = IMBALANCE) -> StagePlan:
    """The stage cuts of n = len(work) kernels into `stages` stages (module docstring).

    Raises:
        ValueError: fewer kernels than stages, stages < 1, a negative work or imbalance, or
            `crossing` not of length n.
    """
    n, p = len(work), stages
    if p < 1 or n < p:
        raise ValueError(f"cannot cut {n} kernels into {p} stages; each stage needs at least one kernel")
    if len(crossing) != n or imbalance < 0 or any(w < 0 for w in work):
        raise ValueError("need one crossing entry per kernel, work >= 0 and imbalance >= 0")
    prefix = [0.0, *accumulate(work)]
    w_star = _min_max_work(work, p)
    cap = w_star * (1 + imbalance) * (1 + 1e-12) + 1e-300  # float sums: W* itself stays feasible
    inf = float("inf")
    # cost[j][i]: (bytes crossing, max work, cut list) of the best j-stage partition of kernels [0, i)
    cost: list[tuple[float, float, tuple[int, ...]]] = [(inf, inf, ())] * (n + 1)
    cost[0] = (0.0, 0.0, ())
    for j in range(p):
        nxt: list[tuple[float, float, tuple[int, ...]]] = [(inf, inf, ())] * (n + 1)
        for i in range(1, n + 1):
            for k in range(bisect_left(prefix, prefix[i] - cap, 0, i), i):  # stages within the cap only
                b, w, cuts = cost[k]
                seg = prefix[i] - prefix[k]
                if b == inf or seg > cap or (j == 0) != (k == 0):
                    continue
                cand = (b + (crossing[k] if k else 0), max(w, seg), (*cuts, k) if k else cuts)
                if cand < nxt[i]:
                    nxt[i] = cand
        cost = nxt
    _, _, cuts = cost[n]
    starts = (0, *cuts)
    bounds = (*starts, n)
    stage_work = tuple(prefix[bounds[s + 1]] - prefix[bounds[s]] for s in range(p))
    return StagePlan(starts, stage_work, tuple(int(crossing[c]) for c in cuts), w_star)
