"""Bad inputs a new user tries (issue 10, part 2): each gets one paragraph and exit 2 from
the CLIs, and nothing a hand-edited or oversized input asks for is trusted.

- rdu-opt: missing, binary or malformed MLIR, unknown pass, bad option syntax, unknown
  option, a module the verifier refuses, an unwritable -o.
- rdu-compile: an existing file or an unwritable folder as -o, unwritable --plot/--trace
  (refused before compiling), a meta-device model, a fabric spec path with a backslash.
- fabric specs: upper bounds on the grid and the unit sizes.
- placed programs edited by hand (from `rdu-compile --emit placed` of examples/mlp.py on
  `tiny`): PMU capacity, buffer depth and PMU count, units, grid, sites off the grid or
  shared, and the fabric itself are checked against the fabric the module names, by the
  verifier and by the emulator before it runs anything.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp, i64
from xdsl.utils.exceptions import VerifyException

from rdu_compiler.dialects import rdu
from rdu_compiler.errors import EmulatorError
from rdu_compiler.fabric import FabricError, load_fabric
from rdu_compiler.ir import parse_module
from rdu_compiler.runtime.emulator import Emulator
from rdu_compiler.tools import rdu_compile, rdu_opt

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "mlp.py"
TINY_TOML = ROOT / "rdu_compiler" / "fabric" / "presets" / "tiny.toml"
TINY = load_fabric("tiny")
FAST = ["--fabric", "tiny", "--no-run"]


def run(main: object, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        main(argv)  # type: ignore[operator]
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    _, err = capsys.readouterr()
    return code, err


def one_paragraph(err: str) -> str:
    assert err.lstrip().startswith("error:"), err
    assert "Traceback" not in err
    assert "\n\n" not in err.strip(), err
    return " ".join(err.split())


@pytest.fixture(scope="module")
def placed(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The placed program of examples/mlp.py on `tiny`, as `rdu-compile --emit placed` writes it."""
    out = tmp_path_factory.mktemp("placed") / "out"
    try:
        rdu_compile.main([str(MLP), *FAST, "--emit", "placed", "-o", str(out)])
    except SystemExit as e:
        assert e.code == 0
    return (out / "model.mlir").read_text()


# ---------------------------------------------------------------------------- rdu-opt

EMPTY = b"builtin.module {\n}\n"


@pytest.mark.parametrize(
    ("name", "content", "extra", "expect"),
    [
        ("missing", None, [], "No such file"),
        ("binary", b"\x7fELF\x02\x01\x01\x00\xd0\xff\xfe", [], "not MLIR text"),
        ("malformed", b"func.func @f( {\n", [], "Expected argument or type"),
        ("empty", b"", [], "Could not parse entire input"),
        ("unknown pass", EMPTY, ["-p", "no-such-pass"], "Unrecognized passes"),
        ("option syntax", EMPTY, ["-p", "rdu-tile{fabric=tiny"], "Malformed pass arguments"),
        ("unknown option", EMPTY, ["-p", "rdu-tile{no_such_option=1}"], "no_such_option"),
        ("unknown fabric", EMPTY, ["-p", "rdu-tile{fabric=nosuch}"], "unknown fabric"),
        ("unwritable -o", EMPTY, ["-o", "/proc/no/such.mlir"], "No such file"),
    ],
)
def test_rdu_opt_input_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: bytes | None,
                              extra: list[str], expect: str) -> None:
    path = tmp_path / "in.mlir"
    if content is not None:
        path.write_bytes(content)
    code, err = run(rdu_opt.main, [str(path), *extra], capsys)
    assert code == 2, err
    assert expect in one_paragraph(err)


def test_rdu_opt_verifier_failure(tmp_path: Path, placed: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "in.mlir"
    path.write_text(re.sub(r"pcus_available = \d+", "pcus_available = 0", placed, count=1))
    code, err = run(rdu_opt.main, [str(path)], capsys)
    assert code == 2
    assert "uses" in one_paragraph(err) and "PCUs but the fabric has 0" in err


def test_rdu_opt_subprocess_exit_2_no_traceback(tmp_path: Path) -> None:
    """What a user sees from the command itself; --debug shows the traceback."""
    path = tmp_path / "bin.mlir"
    path.write_bytes(b"\x00\xff\xfe binary")
    cmd = [sys.executable, "-m", "rdu_compiler.tools.rdu_opt", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2
    one_paragraph(proc.stderr)
    proc = subprocess.run([*cmd, "--debug"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 1 and "Traceback" in proc.stderr


# ---------------------------------------------------------------------------- rdu-compile


def test_existing_file_as_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "results"
    target.write_text("my results")
    code, err = run(rdu_compile.main, [str(MLP), *FAST, "-o", str(target)], capsys)
    assert code == 2
    assert "existing file" in one_paragraph(err)
    assert target.read_text() == "my results"


@pytest.mark.parametrize("flag", ["-o", "--plot", "--trace"])
@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_unwritable_paths_refused_before_compiling(tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, where: str) -> None:
    (tmp_path / "afile").write_text("x")
    bad = str(tmp_path / "afile" / "sub") if where == "under-a-file" else "/proc/rdu-test/x"
    out = tmp_path / "out"
    argv = [str(MLP), *FAST, "-o", bad if flag == "-o" else str(out)]
    if flag != "-o":
        argv += [flag, bad]
    code, err = run(rdu_compile.main, argv, capsys)
    assert code == 2
    assert flag in one_paragraph(err)
    assert not out.exists()  # refused up front: nothing compiled, nothing written


META_MODEL = textwrap.dedent(
    """\
    import torch
    from torch import nn

    with torch.device("meta"):
        model = nn.Linear(4, 4)
    example_inputs = (torch.randn(2, 4, device="meta"),)
    """
)


def test_meta_device_model_cannot_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "meta.py").write_text(META_MODEL)
    argv = [str(tmp_path / "meta.py"), "--fabric", "tiny", "-o", str(tmp_path / "out")]
    code, err = run(rdu_compile.main, argv, capsys)
    assert code == 2
    assert "meta device" in one_paragraph(err) and "--no-run" in one_paragraph(err)
    assert not (tmp_path / "out").exists()


def test_meta_device_model_with_no_run_reports_without_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Shape-only models compile: --no-run writes model.mlir and report.json, no weights file."""
    (tmp_path / "meta.py").write_text(META_MODEL)
    out = tmp_path / "out"
    code, _ = run(rdu_compile.main, [str(tmp_path / "meta.py"), "--fabric", "tiny", "--no-run", "-o", str(out)], capsys)
    assert code == 0
    assert (out / "model.mlir").is_file() and (out / "report.json").is_file()
    assert not (out / "weights.safetensors").exists()


def test_fabric_path_with_backslash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A spec path with a backslash (Windows style, or a folder named so) is a path, not an escape."""
    folder = tmp_path / "we\\ird"
    folder.mkdir()
    shutil.copy(TINY_TOML, folder / "tiny.toml")
    out = tmp_path / "out"
    code, err = run(rdu_compile.main, [str(MLP), "--fabric", str(folder / "tiny.toml"), "--no-run", "-o", str(out)], capsys)
    assert code == 0, err
    assert str(folder / "tiny.toml") in (out / "model.mlir").read_text().replace("\\\\", "\\")
    # A backslash path that does not exist: one paragraph, exit 2 (it was a BaseException from the API).
    code, err = run(rdu_compile.main, [str(MLP), "--fabric", "C:\\fabrics\\tiny.toml", "--no-run", "-o", str(out)], capsys)
    assert code == 2
    assert "cannot read fabric spec" in one_paragraph(err)


# ---------------------------------------------------------------------------- fabric bounds


def _spec(tmp_path: Path, old: str, new: str) -> Path:
    text = TINY_TOML.read_text()
    assert old in text
    path = tmp_path / "f.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("rows = 4\ncols = 4", "rows = 100000\ncols = 100000", "[grid].rows = 100000 exceeds the limit 512"),
        ("rows = 4\ncols = 4", "rows = 400\ncols = 400", "160000 sites exceeds the limit of 65536"),
        ("capacity_bytes = 16384", "capacity_bytes = 1073741824", "[pmu].capacity_bytes"),
        ("lanes = 16", "lanes = 1000000", "[pcu].lanes"),
        ("fp32 = 192", "fp32 = 10000000000", "[pcu.flops_per_cycle].fp32"),
        ("clock_hz = 1e9", "clock_hz = 1e300", "[fabric].clock_hz"),
        ("capacity_bytes = 65536", "capacity_bytes = 9223372036854775807", "[hbm].capacity_bytes"),
        ("program_load_s = 1e-6", "program_load_s = 1e6", "[launch].program_load_s"),
    ],
)
def test_fabric_spec_upper_bounds(tmp_path: Path, old: str, new: str, field: str) -> None:
    path = _spec(tmp_path, old, new)
    with pytest.raises(FabricError) as info:
        load_fabric(path)
    assert str(path) in str(info.value) and field in str(info.value)


def test_empty_fabric_name() -> None:
    """`--fabric ''` was read as the path '.' ("Is a directory")."""
    with pytest.raises(FabricError, match="empty fabric name"):
        load_fabric("")


def test_fabric_bounds_admit_the_presets_and_a_large_grid(tmp_path: Path) -> None:
    load_fabric("sn40l")
    assert load_fabric(_spec(tmp_path, "rows = 4\ncols = 4", "rows = 256\ncols = 256")).num_pcus == 32768


# ---------------------------------------------------------------------------- hand-edited IR


def _edit_first_buffer(text: str, make: object) -> str:
    """Replace the first `#rdu.buffer<t, p, c, d>` with make(t, p, c, d)."""
    m = re.search(r"#rdu\.buffer<(\d+), (\d+), (\d+), (\d+)>", text)
    assert m is not None
    t, p, c, d = (int(g) for g in m.groups())
    return text[: m.start()] + make(t, p, c, d) + text[m.end():]  # type: ignore[operator]


def _all_buffers_claim(text: str, capacity: int) -> str:
    return re.sub(r"#rdu\.buffer<(\d+), (\d+), (\d+), (\d+)>", lambda m: f"#rdu.buffer<{m[1]}, {m[2]}, {capacity}, {m[4]}>", text)


def _sections(module: ModuleOp) -> list[rdu.SectionOp]:
    return [op for op in module.walk() if isinstance(op, rdu.SectionOp)]


def _inputs(module: ModuleOp) -> list[np.ndarray]:
    fn = next(op for op in module.ops if op.name == "func.func")
    return [np.zeros(rdu.shape_of(a.type), dtype=np.float32) for a in fn.body.block.args]  # type: ignore[attr-defined]


def _refused(text: str, match: str) -> None:
    """The verifier refuses the text, and so does the emulator (parsing without verifying)."""
    module = parse_module(text)
    with pytest.raises(EmulatorError, match=match):
        Emulator(module, TINY).run(_inputs(module))


def test_placed_program_runs_unedited(placed: str) -> None:
    module = parse_module(placed)
    outputs, _ = Emulator(module, TINY).run(_inputs(module))
    assert outputs


def test_one_gib_pmus_refused(placed: str) -> None:
    _refused(_all_buffers_claim(placed, 1 << 30), "claims PMUs of 1073741824 B but the fabric's PMUs hold 16384 B")


def _refused_at_parse(tmp_path: Path, text: str, match: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A buffer attribute the verifier refuses cannot even be parsed (attributes verify on
    construction), so it never reaches the emulator; rdu-opt says so in one paragraph."""
    with pytest.raises(VerifyException, match=match):
        parse_module(text)
    path = tmp_path / "edited.mlir"
    path.write_text(text)
    code, err = run(rdu_opt.main, [str(path)], capsys)
    assert code == 2 and match in one_paragraph(err)


def test_depth_zero_refused(tmp_path: Path, placed: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = _edit_first_buffer(placed, lambda t, p, c, d: f"#rdu.buffer<{t}, {p}, {c}, 0>")
    _refused_at_parse(tmp_path, text, "depth >= 1", capsys)


def test_zero_pmus_refused(tmp_path: Path, placed: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = _edit_first_buffer(placed, lambda t, p, c, d: f"#rdu.buffer<{max(t, 1)}, 0, {c}, {d}>")
    _refused_at_parse(tmp_path, text, "on 0 PMUs", capsys)


def test_empty_buffer_on_zero_pmus_is_valid() -> None:
    """An init the PCU fills itself streams nothing: 0 B tiles on 0 PMUs stay legal."""
    rdu.BufferAttr(0, 0, 16384, 2).verify()


def test_units_beyond_the_fabric_refused(placed: str) -> None:
    """A section claiming 1000 available PCUs on tiny (its kernels still use 8 or fewer)."""
    _refused(re.sub(r"pcus_available = \d+", "pcus_available = 1000", placed), "pcus_available = 1000 but the fabric has 8")


def test_program_for_another_fabric_refused(tmp_path: Path, placed: str) -> None:
    with pytest.raises(EmulatorError, match="section 's0' on fabric 'sn40l': grid"):
        Emulator(parse_module(placed), load_fabric("sn40l"))
    faster = load_fabric(_spec(tmp_path, "clock_hz = 1e9", "clock_hz = 2e9"))  # same units, another chip
    with pytest.raises(EmulatorError, match="compiled for fabric 'tiny'"):
        Emulator(parse_module(placed), faster)
    Emulator(parse_module(placed), load_fabric(TINY_TOML))  # the preset's own file: the same fabric


def test_off_grid_site_refused(placed: str) -> None:
    module = parse_module(placed)
    k = next(k for s in _sections(module) for k in s.kernels() if k.pcu_sites is not None)
    sites = [int(v) for v in k.pcu_sites.get_values()]  # type: ignore[union-attr]
    sites[0:2] = [0, 8]  # a PCU site by parity, 4 columns beyond the 4 x 4 grid
    k.pcu_sites = DenseArrayBase.from_list(i64, sites)
    _refused(str(module), r"placed a PCU on \(0, 8\), off the 4 x 4 grid")


def test_off_grid_site_without_grid_attribute_refused(placed: str) -> None:
    """With the section's `grid` removed, sites are still checked against the fabric's grid."""
    module = parse_module(placed)
    s = next(s for s in _sections(module) if any(k.pcu_sites is not None for k in s.kernels()))
    del s.properties["grid"]
    k = next(k for k in s.kernels() if k.pcu_sites is not None)
    sites = [int(v) for v in k.pcu_sites.get_values()]  # type: ignore[union-attr]
    sites[0:2] = [6, 6]
    k.pcu_sites = DenseArrayBase.from_list(i64, sites)
    _refused(str(module), r"off the 4 x 4 grid")


def test_double_booked_site_refused(placed: str) -> None:
    module = parse_module(placed)
    s = next(s for s in _sections(module) if len(s.kernels()) >= 2)
    a, b = s.kernels()[:2]
    sites = [int(v) for v in b.pcu_sites.get_values()]  # type: ignore[union-attr]
    sites[0:2] = [int(v) for v in a.pcu_sites.get_values()][0:2]  # type: ignore[union-attr]
    b.pcu_sites = DenseArrayBase.from_list(i64, sites)  # b's first PCU on a's first site
    _refused(str(module), "both placed on site")
