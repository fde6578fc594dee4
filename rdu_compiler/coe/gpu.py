"""A GPU box as data (DGX H100, DGX A100), for the Composition-of-Experts comparison.

Tags as in ../shared/reference/sn40l.md: [P] primary source, [S] secondary source (a vendor
page or a summary of the SN40L paper, ../shared/reference/workloads.md), [D] derived,
[NF] not found: a modelling choice, with its reasoning.

The GPU side of the CoE simulation (`rdu_compiler.coe.runtime.simulate`) uses:

- **HBM-bound decode**: one output step reads every weight shard and the KV cache once from
  each GPU's HBM, so a step takes (weight_bytes + kv_bytes) / gpus / hbm_bytes_per_s seconds,
  times `1 / hbm_efficiency`. This is a roofline bound: optimistic for the GPU (Kernel
  Looping, arXiv 2410.23668, measures GPUs at 21% of peak memory bandwidth in decode [P]).
- **Compute-bound prefill**: max(2 * params * tokens / (gpus * peak_flops), the decode bound).
- **TP all-reduces** over NVLink: two per layer, latency `nvlink_latency_s` each plus
  bytes / nvlink_bytes_per_s (the ring's 2(N-1)/N factor included).
- **Expert switch**: an expert copied from host memory to HBM at `host_copy_bytes_per_s()`.
"""

from __future__ import annotations

from dataclasses import dataclass

from rdu_compiler.errors import RduError


@dataclass(frozen=True)
class GpuNode:
    """One GPU box. Units: bytes, bytes/s, FLOP/s, seconds.

    Attributes:
        name: preset name (`dgx-h100`, `dgx-a100`).
        gpus: GPUs in the box.
        hbm_bytes: HBM of one GPU.
        hbm_bytes_per_s: HBM bandwidth of one GPU.
        peak_bf16_flops: dense BF16 tensor peak of one GPU.
        host_to_gpu_bytes_per_s: host memory -> one GPU (its PCIe link), one direction.
        host_links_per_copy: how many host links one expert copy uses at once (see the
            presets for why the default is 1).
        nvlink_bytes_per_s: NVLink bandwidth of one GPU, one direction.
        nvlink_latency_s: latency of one NVLink all-reduce step.
        host_memory_bytes: host DRAM of the box (the home of experts that are not in HBM).
        hbm_efficiency: share of HBM bandwidth a decode step achieves (1.0 = the bound).
    """

    name: str
    gpus: int
    hbm_bytes: float
    hbm_bytes_per_s: float
    peak_bf16_flops: float
    host_to_gpu_bytes_per_s: float
    host_links_per_copy: int
    nvlink_bytes_per_s: float
    nvlink_latency_s: float
    host_memory_bytes: float
    hbm_efficiency: float = 1.0

    @property
    def total_hbm_bytes(self) -> float:
        """HBM of the whole box (bytes)."""
        return self.gpus * self.hbm_bytes

    def host_copy_bytes_per_s(self) -> float:
        """Bandwidth of one expert copy from host memory into HBM (bytes/s)."""
        return self.host_to_gpu_bytes_per_s * self.host_links_per_copy

    def switch_s(self, expert_bytes: float) -> float:
        """Seconds to copy one expert of `expert_bytes` from host memory into HBM."""
        return expert_bytes / self.host_copy_bytes_per_s()

    def decode_step_s(self, weight_bytes: float, kv_bytes: float, layers: int, act_bytes: float) -> float:
        """One HBM-bound decode step of a TP-`gpus` model (seconds).

        Args:
            weight_bytes: the whole model's weights (bytes), split evenly over the GPUs.
            kv_bytes: the KV cache read by this step, all sequences of the batch (bytes).
            layers: decoder layers (two all-reduces each).
            act_bytes: bytes of one all-reduce message (batch x new tokens x hidden x 2).
        """
        hbm = (weight_bytes + kv_bytes) / self.gpus / (self.hbm_bytes_per_s * self.hbm_efficiency)
        return hbm + 2 * layers * self.all_reduce_s(act_bytes)

    def prefill_s(self, weight_bytes: float, params: float, tokens: int, kv_bytes: float, layers: int, act_bytes: float) -> float:
        """A prefill of `tokens` tokens: max(compute roofline, HBM bound) + all-reduces (seconds)."""
        compute = 2.0 * params * tokens / (self.gpus * self.peak_bf16_flops)
        hbm = (weight_bytes + kv_bytes) / self.gpus / (self.hbm_bytes_per_s * self.hbm_efficiency)
        return max(compute, hbm) + 2 * layers * self.all_reduce_s(act_bytes)

    def all_reduce_s(self, nbytes: float) -> float:
        """A ring all-reduce of `nbytes` per GPU over NVLink: latency + 2(N-1)/N * bytes / B."""
        if self.gpus == 1:
            return 0.0
        return self.nvlink_latency_s + 2 * (self.gpus - 1) / self.gpus * nbytes / self.nvlink_bytes_per_s


# DGX H100 -----------------------------------------------------------------------------
# 8 x H100 SXM5 80 GB (640 GB per box) [S, NVIDIA DGX H100 product pages].
# HBM3 3.35 TB/s per GPU [S, H100 SXM5 spec tables: NVIDIA via glennklockwood.com/garden/processors/h100].
# BF16 dense 989.4 TFLOP/s per GPU (1979 with sparsity) [S, same page, citing NVIDIA's Hopper whitepaper].
# Host -> GPU 64 GB/s (PCIe Gen5 x16, one direction) [S, workloads.md "Composition of Experts"].
# host_links_per_copy = 1 [NF]: the SN40L paper's 15x switching ratio equals
#   (>1 TB/s) / 64 GB/s, i.e. it charges one expert copy at one link's bandwidth. Eight GPUs
#   copying their TP8 shards over eight links at once would be up to 8x faster, bounded by
#   host DRAM and PCIe-switch sharing (unpublished); benchmarks/coe.py sweeps 1 and 8.
# NVLink 4: 900 GB/s bidirectional per GPU = 450 GB/s each direction [S, NVIDIA HGX H100 blog].
# NVLink all-reduce step latency 5 us [NF]: the order of a NCCL small-message all-reduce.
# Host memory 2 TB [S, DGX H100 product pages].
DGX_H100 = GpuNode("dgx-h100", 8, 80e9, 3.35e12, 989e12, 64e9, 1, 450e9, 5e-6, 2e12)

# DGX A100 -----------------------------------------------------------------------------
# 8 x A100 SXM4 80 GB (640 GB per box) [S, NVIDIA DGX A100 640GB product page].
# HBM2e 2.039 TB/s per GPU [S, glennklockwood.com/garden/processors/A100, citing NVIDIA's A100 datasheet].
# BF16 dense 312 TFLOP/s per GPU [S, same page]. PCIe Gen4 32+32 GB/s per GPU [S, same page].
# Host -> GPU 32 GB/s (PCIe Gen4 x16, one direction) [S, workloads.md]; one link per copy
#   for the reason given for the H100 (the paper's 31x = 1 TB/s / 32 GB/s) [NF].
# NVLink 3: 300 + 300 GB/s per GPU = 300 GB/s each direction [S, same page].
# Host memory 1 TB (2 TB option) [S, DGX A100 product page]; 1 TB here.
DGX_A100 = GpuNode("dgx-a100", 8, 80e9, 2.039e12, 312e12, 32e9, 1, 300e9, 5e-6, 1e12)

GPU_NODES = {n.name: n for n in (DGX_H100, DGX_A100)}


class UnknownGpuNode(RduError):
    """A GPU node name that is not a preset."""


def gpu_node(name: str) -> GpuNode:
    """The GPU preset called `name`.

    Raises:
        UnknownGpuNode: no such preset (the message lists them).
    """
    try:
        return GPU_NODES[name]
    except KeyError:
        raise UnknownGpuNode(f"there is no GPU node '{name}'; the presets are {', '.join(sorted(GPU_NODES))} "
                             "(rdu_compiler/coe/gpu.py); pick one of them") from None
