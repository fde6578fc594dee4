"""The target fabric as data: frozen dataclasses loaded from TOML presets or files."""

from rdu_compiler.fabric.spec import (
    AGCUSpec,
    Fabric,
    FabricError,
    PCUSpec,
    PMUSpec,
    TierSpec,
    load_fabric,
    node_fabric,
    node_preset,
    preset_names,
)

__all__ = [
    "AGCUSpec",
    "Fabric",
    "FabricError",
    "PCUSpec",
    "PMUSpec",
    "TierSpec",
    "node_fabric",
    "node_preset",
    "load_fabric",
    "preset_names",
]
