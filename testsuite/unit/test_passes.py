"""The pass registry, `rdu-opt`, and the pipeline as a list of registered pass names."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from xdsl.passes import ModulePass, PassPipeline

from rdu_compiler.errors import CompileError
from rdu_compiler.ir import parse_module
from rdu_compiler.passes import get_all_passes
from rdu_compiler.pipeline import pipeline, run_pipeline

PIPELINE_ORDER = ["rdu-fold-constants", "rdu-convert-linalg", "rdu-hash-lookup", "rdu-inline-splats", "rdu-fold-views", "rdu-fuse", "rdu-tile", "rdu-section", "rdu-allocate", "rdu-place"]
RDU_OPT = shutil.which("rdu-opt") or str(Path(sys.executable).parent / "rdu-opt")
TINY_TOML = Path(__file__).resolve().parents[2] / "rdu_compiler" / "fabric" / "presets" / "tiny.toml"

SMALL = """
func.func @main(%x: tensor<16x64xf32>, %w: tensor<64x32xf32>) -> tensor<16x32xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<16x32xf32>
  %c = linalg.fill ins(%z : f32) outs(%e : tensor<16x32xf32>) -> tensor<16x32xf32>
  %m = linalg.matmul ins(%x, %w : tensor<16x64xf32>, tensor<64x32xf32>) outs(%c : tensor<16x32xf32>) -> tensor<16x32xf32>
  %r = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%m : tensor<16x32xf32>) outs(%e : tensor<16x32xf32>) {
  ^bb0(%in: f32, %out: f32):
    %q = arith.maximumf %in, %z : f32
    linalg.yield %q : f32
  } -> tensor<16x32xf32>
  return %r : tensor<16x32xf32>
}
"""


def spec_name(spec: str) -> str:
    return spec.split("{", 1)[0]


def test_registry_names_match_pass_classes() -> None:
    registry = get_all_passes()
    assert sorted(registry) == sorted([*PIPELINE_ORDER, "rdu-shard", "rdu-pipeline", "rdu-kernel-loop", "rdu-tier-rows"])  # tp, pp, looping, row tiering
    for name, factory in registry.items():
        cls = factory()
        assert issubclass(cls, ModulePass)
        assert cls.name == name
        assert dataclasses.is_dataclass(cls)
        assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
        cls()  # every option has a default: the pass runs with no options


def test_rdu_opt_help_lists_every_pass() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from rdu_compiler.tools.rdu_opt import main; main(['--help'])"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    # argparse wraps the list at hyphens; join the lines back.
    joined = "".join(proc.stdout.split())
    found = re.search(r"Availablepassesare:(.*?)--", joined)
    assert found, proc.stdout
    listed = set(found.group(1).split(","))
    for name in get_all_passes():
        assert name in listed
    assert "canonicalize" in listed  # xDSL's own passes stay available


def test_rdu_opt_command_on_path() -> None:
    proc = subprocess.run([RDU_OPT, "--help"], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0
    assert "rdu-tile" in "".join(proc.stdout.split())


@pytest.mark.parametrize("fabric", ["sn40l", "tiny"])
@pytest.mark.parametrize("opt_level", [0, 1])
def test_pipeline_is_registered_names(fabric: str, opt_level: int) -> None:
    specs = pipeline(fabric, opt_level)
    names = [spec_name(s) for s in specs]
    registry = get_all_passes()
    assert all(n in registry for n in names)
    want = PIPELINE_ORDER if opt_level == 1 else [n for n in PIPELINE_ORDER if n not in ("rdu-fold-views", "rdu-fuse")]
    assert names == want
    for s in specs:
        if spec_name(s) not in ("rdu-fold-constants", "rdu-convert-linalg", "rdu-hash-lookup", "rdu-inline-splats", "rdu-fold-views", "rdu-fuse"):
            assert f"fabric={fabric}" in s
    section = next(s for s in specs if s.startswith("rdu-section"))
    assert f"per_op={'true' if opt_level == 0 else 'false'}" in section
    # Each spec is something `rdu-opt -p` accepts.
    parsed = PassPipeline.parse_spec(dict(registry), ",".join(specs))
    assert [p.name for p in parsed.passes] == names


def test_pipeline_through_rdu_opt_equals_run_pipeline(tmp_path: Path) -> None:
    """The driver is only the list of passes: rdu-opt -p with it gives the same program."""
    src = tmp_path / "small.mlir"
    src.write_text(SMALL)
    specs = pipeline("tiny", 1)
    proc = subprocess.run(
        [RDU_OPT, str(src), "--allow-unregistered-dialect", "-p", ",".join(specs)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    module = parse_module(SMALL)
    run_pipeline(module, specs)
    assert proc.stdout.strip() == str(module).strip()
    assert "rdu.section" in proc.stdout
    assert "pcu_sites" in proc.stdout


def test_passes_run_one_at_a_time() -> None:
    module = parse_module(SMALL)
    snapshots: dict[str, str] = {}
    stages: list[str] = []
    run_pipeline(module, pipeline("tiny", 1), on_pass=stages.append, snapshots=snapshots)
    assert stages == PIPELINE_ORDER
    assert list(snapshots) == PIPELINE_ORDER
    assert not re.search(r"\blinalg\.(generic|matmul|fill)", snapshots["rdu-convert-linalg"])
    assert "rdu.kernel" in snapshots["rdu-convert-linalg"]
    assert "rdu.section" not in snapshots["rdu-tile"]
    assert "rdu.section" in snapshots["rdu-section"]


def test_pass_failure_names_pass_and_reproducer(tmp_path: Path) -> None:
    text = SMALL.replace("linalg.fill ins(%z : f32) outs(%e : tensor<16x32xf32>) -> tensor<16x32xf32>",
                         '"test.unknown"(%e) : (tensor<16x32xf32>) -> tensor<16x32xf32>')
    module = parse_module(text)
    with pytest.raises(CompileError) as info:
        run_pipeline(module, pipeline("tiny", 1), repro_dir=str(tmp_path))
    err = info.value
    assert err.pass_name == "rdu-convert-linalg"
    assert "test.unknown" in str(err)
    assert err.reproducer is not None and Path(err.reproducer).parent == tmp_path
    assert "test.unknown" in Path(err.reproducer).read_text()
    assert f"rdu-opt {err.reproducer} -p 'rdu-convert-linalg'" in str(err)


def test_pipeline_with_a_fabric_file() -> None:
    module = parse_module(SMALL)
    run_pipeline(module, pipeline(str(TINY_TOML), 1))
    assert "rdu.section" in str(module)


@pytest.mark.parametrize("opt_level", [0, 1])
def test_rdu_shard_runs_after_the_views_and_before_fusion(opt_level: int) -> None:
    names = [spec.split("{", 1)[0] for spec in pipeline("sn40l-node8", opt_level, tp=4)]
    assert names.index("rdu-shard") == names.index("rdu-fold-views" if opt_level else "rdu-inline-splats") + 1
    assert 'rdu-shard{tp=4 fabric="sn40l-node8"}' in pipeline("sn40l-node8", opt_level, tp=4)
    assert "rdu-shard" not in [spec.split("{", 1)[0] for spec in pipeline("sn40l-node8", opt_level)]
