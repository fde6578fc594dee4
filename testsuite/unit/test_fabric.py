"""The fabric spec: presets, the checkerboard, user TOML files and validation."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from rdu_compiler.fabric import (
    AGCUSpec,
    Fabric,
    FabricError,
    PCUSpec,
    PMUSpec,
    TierSpec,
    load_fabric,
    preset_names,
)

GiB = 1 << 30


def test_preset_names() -> None:
    assert {"sn40l", "tiny"} <= set(preset_names())
    assert preset_names() == sorted(preset_names())


def test_sn40l_matches_reference() -> None:
    f = load_fabric("sn40l")
    assert (f.name, f.source, f.sockets) == ("sn40l", "sn40l", 1)
    assert (f.num_pcus, f.num_pmus) == (1040, 1040)  # SN40L Table II
    assert f.clock_hz == 1.6e9
    assert (f.pcu.lanes, f.pcu.stages) == (32, 6)
    assert f.pcu.flops_per_cycle_for("bf16") == 384
    assert f.pcu.flops_per_cycle_for("fp16") == 384
    assert f.pcu.flops_per_cycle_for("fp32") == 192
    # 1040 * 384 * 1.6e9 = 638.976e12, published 638 TFLOP/s
    assert f.peak_flops("bf16") == 1040 * 384 * 1.6e9
    assert f.peak_flops("bf16") == pytest.approx(638e12, rel=0.01)
    assert f.pmu == PMUSpec(capacity_bytes=524288, banks=16, bytes_per_cycle=64)
    assert f.sram_bytes == 520 * (1 << 20)  # 520 MiB, SN40L §I
    assert f.hbm == TierSpec(capacity_bytes=64 * GiB, bytes_per_s=1.8e12)
    assert f.ddr == TierSpec(capacity_bytes=1536 * GiB, bytes_per_s=200e9)
    assert f.link_bytes_per_cycle == 64


def test_sn40l_agcus_reach_hbm_and_ddr() -> None:
    f = load_fabric("sn40l")
    agcu_bytes_per_s = f.agcu.count * f.agcu.bytes_per_cycle * f.clock_hz
    assert agcu_bytes_per_s >= f.hbm.bytes_per_s + f.ddr.bytes_per_s


def test_sn40l_launch_is_microseconds() -> None:
    f = load_fabric("sn40l")
    assert 0 < f.launch_overhead_s < 100e-6
    assert f.launch_overhead_s == f.program_load_s + f.argument_load_s


def test_sn40l_toml_tags_every_number() -> None:
    text = (Path(__file__).parents[2] / "rdu_compiler/fabric/presets/sn40l.toml").read_text()
    for tag in ("[P]", "[D]", "[NF]"):
        assert tag in text


def test_tiny_preset() -> None:
    f = load_fabric("tiny")
    assert (f.rows, f.cols, f.num_pcus, f.num_pmus) == (4, 4, 8, 8)
    assert f.clock_hz == 1e9
    assert (f.pcu.lanes, f.pcu.stages) == (16, 6)
    assert f.pmu.capacity_bytes == 16 * 1024
    assert f.hbm.capacity_bytes == 64 * 1024
    assert f.hbm.capacity_bytes < 150_000 < f.ddr.capacity_bytes  # toy GPT-2 spills
    assert f.ddr.capacity_bytes == 256 * (1 << 20)


def test_dtype_aliases() -> None:
    sn40l = load_fabric("sn40l").pcu
    tiny = load_fabric("tiny").pcu
    assert sn40l.flops_per_cycle_for("f32") == 192
    assert sn40l.flops_per_cycle_for("f16") == 384
    assert sn40l.flops_per_cycle_for("i64") == 192  # no "int" entry: fp32 rate
    assert tiny.flops_per_cycle_for("i32") == 96  # "int" entry
    assert tiny.flops_per_cycle_for("i1") == 96
    with pytest.raises(FabricError, match="f8"):
        sn40l.flops_per_cycle_for("f8")


@pytest.mark.parametrize("name", ["sn40l", "tiny"])
def test_checkerboard_sites(name: str) -> None:
    f = load_fabric(name)
    pcus, pmus = f.pcu_sites(), f.pmu_sites()
    assert len(pcus) == f.num_pcus and len(pmus) == f.num_pmus
    assert pcus == sorted(pcus) and pmus == sorted(pmus)  # row-major
    assert all((r + c) % 2 == 0 for r, c in pcus)
    assert all((r + c) % 2 == 1 for r, c in pmus)
    assert len(set(pcus) | set(pmus)) == f.rows * f.cols


@pytest.mark.parametrize("name", ["sn40l", "tiny"])
def test_agcu_sites_on_both_edges(name: str) -> None:
    f = load_fabric(name)
    sites = f.agcu_sites()
    assert len(set(sites)) == f.agcu.count
    left = [r for r, c in sites if c == -1]
    right = [r for r, c in sites if c == f.cols]
    assert len(left) + len(right) == f.agcu.count
    assert abs(len(left) - len(right)) <= 1
    assert all(0 <= r < f.rows for r in left + right)


def test_tiny_site_coordinates() -> None:
    f = load_fabric("tiny")
    assert f.pcu_sites()[:4] == [(0, 0), (0, 2), (1, 1), (1, 3)]
    assert f.pmu_sites()[:4] == [(0, 1), (0, 3), (1, 0), (1, 2)]
    assert f.agcu_sites() == [(2, -1), (2, 4)]


def test_fabric_is_frozen_and_hashable() -> None:
    f = load_fabric("tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.rows = 8  # type: ignore[misc]
    with pytest.raises(TypeError):
        f.pcu.flops_per_cycle["bf16"] = 1  # type: ignore[index]
    assert hash(f) == hash(load_fabric("tiny"))
    assert f == load_fabric("tiny")


def test_fabric_built_from_dataclasses() -> None:
    f = Fabric(
        name="made-up",
        source="test",
        clock_hz=1e9,
        rows=2,
        cols=3,
        layout="checkerboard",
        pcu=PCUSpec(lanes=4, stages=2, flops_per_cycle={"fp32": 8}),
        pmu=PMUSpec(capacity_bytes=1000, banks=2, bytes_per_cycle=8),
        agcu=AGCUSpec(count=1, bytes_per_cycle=8),
        hbm=TierSpec(capacity_bytes=10_000, bytes_per_s=1e9),
        ddr=TierSpec(capacity_bytes=100_000, bytes_per_s=1e8),
        link_bytes_per_cycle=8,
        program_load_s=1e-6,
        argument_load_s=1e-6,
        sockets=1,
        p2p_bytes_per_s=1e9,
    )
    assert (f.num_pcus, f.num_pmus, f.sram_bytes) == (3, 3, 3000)
    assert f.peak_flops("f32") == 3 * 8 * 1e9
    assert f.agcu_sites() == [(1, -1)]  # centre of the one band of 2 rows


# --- user TOML files --------------------------------------------------------

TINY_TOML = (Path(__file__).parents[2] / "rdu_compiler/fabric/presets/tiny.toml").read_text()


def _write(tmp_path: Path, text: str, name: str = "custom.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _edit(text: str, table: str, line: str, new: str | None) -> str:
    """Replace (or with new=None, delete) the line starting with ``line`` in [table]."""
    head = f"[{table}]\n"
    start = text.index(head) + len(head)
    end = text.find("\n[", start)
    end = len(text) if end < 0 else end
    body = text[start:end]
    pattern = re.compile(rf"^{re.escape(line)}\b.*$\n?", re.M)
    assert pattern.search(body), f"no line {line!r} in [{table}]"
    body = pattern.sub("" if new is None else new + "\n", body, count=1)
    return text[:start] + body + text[end:]


def test_user_toml_round_trip(tmp_path: Path) -> None:
    text = TINY_TOML.replace('name = "tiny"', 'name = "mine"')
    text = _edit(text, "grid", "rows", "rows = 6")
    path = _write(tmp_path, text)
    f = load_fabric(path)
    assert (f.name, f.source) == ("mine", str(path))
    assert (f.rows, f.num_pcus, f.num_pmus) == (6, 12, 12)
    assert dataclasses.replace(f, name="tiny", source="tiny", rows=4) == load_fabric("tiny")
    assert load_fabric(str(path)) == f


@pytest.mark.parametrize(
    ("table", "line", "new", "field"),
    [
        ("pmu", "banks", None, "[pmu].banks"),  # missing field
        ("pmu", "banks", 'banks = "16"', "[pmu].banks"),  # wrong type
        ("pmu", "banks", "banks = 16.0", "[pmu].banks"),  # float for an int
        ("pmu", "banks", "banks = true", "[pmu].banks"),  # bool for an int
        ("hbm", "bytes_per_s", "bytes_per_s = 0", "[hbm].bytes_per_s"),  # non-positive
        ("pmu", "capacity_bytes", "capacity_bytes = -1", "[pmu].capacity_bytes"),
        ("fabric", "clock_hz", "clock_hz = nan", "[fabric].clock_hz"),
        ("fabric", "name", 'name = ""', "[fabric].name"),
        ("pmu", "banks", "bankz = 16", "[pmu].bankz"),  # unknown field (typo)
        ("pcu.flops_per_cycle", "int", "int = 0", "[pcu.flops_per_cycle].int"),
        ("grid", "layout", 'layout = "hexagonal"', "[grid].layout"),
        ("grid", "rows", "rows = 3\ncols = 5", "[grid].rows"),  # odd site count
        ("agcu", "count", "count = 9", "[agcu].count"),  # more than 2*rows edge sites
    ],
)
def test_invalid_spec_names_file_and_field(
    tmp_path: Path, table: str, line: str, new: str | None, field: str
) -> None:
    text = TINY_TOML
    if field == "[grid].rows":
        text = _edit(text, "grid", "cols", None)
    path = _write(tmp_path, _edit(text, table, line, new), "broken_spec.toml")
    with pytest.raises(FabricError) as err:
        load_fabric(path)
    assert "broken_spec.toml" in str(err.value)
    assert field in str(err.value)


def test_typo_suggests_the_field(tmp_path: Path) -> None:
    path = _write(tmp_path, _edit(TINY_TOML, "pmu", "banks", "bankz = 16"))
    with pytest.raises(FabricError, match="did you mean 'banks'"):
        load_fabric(path)


def test_unknown_table(tmp_path: Path) -> None:
    path = _write(tmp_path, TINY_TOML.replace("[hbm]", "[hmb]"), "bad_table.toml")
    with pytest.raises(FabricError, match=r"bad_table\.toml.*\[hmb\].*did you mean 'hbm'"):
        load_fabric(path)


def test_missing_table(tmp_path: Path) -> None:
    text = TINY_TOML.replace("[network]\n", "").replace("link_bytes_per_cycle = 64\n", "")
    path = _write(tmp_path, text, "no_net.toml")
    with pytest.raises(FabricError, match=r"no_net\.toml.*\[network\]\.link_bytes_per_cycle"):
        load_fabric(path)


def test_bad_toml(tmp_path: Path) -> None:
    path = _write(tmp_path, "[fabric\nname = ", "syntax.toml")
    with pytest.raises(FabricError, match=r"syntax\.toml.*invalid TOML"):
        load_fabric(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FabricError, match="nowhere.toml"):
        load_fabric(tmp_path / "nowhere.toml")


def test_unknown_preset() -> None:
    with pytest.raises(FabricError, match=r"'sn50'.*sn40l, sn40l-node8, sn40l-rack16, tiny"):
        load_fabric("sn50")
