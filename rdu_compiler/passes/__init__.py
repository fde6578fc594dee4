"""The rdu passes, by name. Lazy imports keep `rdu-opt --help` fast (as xDSL's registry)."""

from __future__ import annotations

from collections.abc import Callable

from xdsl.passes import ModulePass


def _tier_rows() -> type[ModulePass]:
    from rdu_compiler.passes.rdu_tier_rows import RduTierRowsPass

    return RduTierRowsPass


def _fold_constants() -> type[ModulePass]:
    from rdu_compiler.passes.rdu_fold_constants import RduFoldConstantsPass

    return RduFoldConstantsPass


def _convert() -> type[ModulePass]:
    from rdu_compiler.passes.rdu_convert_linalg import RduConvertLinalgPass

    return RduConvertLinalgPass


def _hash_lookup() -> type[ModulePass]:
    from rdu_compiler.passes.rdu_hash_lookup import RduHashLookupPass

    return RduHashLookupPass


def _inline_splats() -> type[ModulePass]:
    from rdu_compiler.passes.rdu_inline_splats import RduInlineSplatsPass

    return RduInlineSplatsPass


def _fold_views() -> type[ModulePass]:
    from rdu_compiler.passes.rdu_fold_views import RduFoldViewsPass

    return RduFoldViewsPass


def _shard() -> type[ModulePass]:
    from rdu_compiler.passes.rdu_shard import RduShardPass

    return RduShardPass


def _fuse() -> type[ModulePass]:
    from rdu_compiler.passes.rdu_fuse import RduFusePass

    return RduFusePass


def _pipeline() -> type[ModulePass]:
    from rdu_compiler.passes.rdu_pipeline import RduPipelinePass

    return RduPipelinePass


def _tile() -> type[ModulePass]:
    from rdu_compiler.passes.rdu_tile import RduTilePass

    return RduTilePass


def _section() -> type[ModulePass]:
    from rdu_compiler.passes.rdu_section import RduSectionPass

    return RduSectionPass


def _allocate() -> type[ModulePass]:
    from rdu_compiler.passes.rdu_allocate import RduAllocatePass

    return RduAllocatePass


def _place() -> type[ModulePass]:
    from rdu_compiler.passes.rdu_place import RduPlacePass

    return RduPlacePass


def _kernel_loop() -> type[ModulePass]:
    from rdu_compiler.passes.rdu_kernel_loop import RduKernelLoopPass

    return RduKernelLoopPass


def get_all_passes() -> dict[str, Callable[[], type[ModulePass]]]:
    """Pass name -> function returning the pass class."""
    return {
        "rdu-fold-constants": _fold_constants,
        "rdu-convert-linalg": _convert,
        "rdu-hash-lookup": _hash_lookup,
        "rdu-inline-splats": _inline_splats,
        "rdu-fold-views": _fold_views,
        "rdu-shard": _shard,
        "rdu-fuse": _fuse,
        "rdu-pipeline": _pipeline,
        "rdu-tile": _tile,
        "rdu-section": _section,
        "rdu-tier-rows": _tier_rows,
        "rdu-allocate": _allocate,
        "rdu-place": _place,
        "rdu-kernel-loop": _kernel_loop,
    }
