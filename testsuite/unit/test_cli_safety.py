"""rdu-compile never destroys a user's files, and signals or failures never leave a
half-written output folder or a temporary behind (issue 10, part 0).

The folder rules are tested on `tools.outputs.write_outputs` directly (fast, no
compile) and through the CLI on examples/mlp.py (`--fabric tiny --no-run`). Signals are
sent by the process to itself at a chosen point (a patched save or commit) in a
subprocess, so the tests are deterministic and pytest's own handlers are untouched.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rdu_compiler.tools import outputs
from rdu_compiler.tools.outputs import MARKER, OutputError, check_output_dir, write_outputs
from testsuite.unit.test_cli import run_cli  # rdu-compile in-process: (status, stdout, stderr)

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "examples" / "mlp.py"
FAST = ["--fabric", "tiny", "--no-run"]


def one_paragraph(err: str) -> str:
    assert err.lstrip().startswith("error:"), err
    assert "Traceback" not in err
    assert "\n\n" not in err.strip(), err
    return " ".join(err.split())


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".rdu-"))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def fill_ab(tmp: Path) -> None:
    (tmp / "model.mlir").write_text("new model")
    (tmp / "report.json").write_text("{}")


# ---------------------------------------------------------------- write_outputs, directly


def test_new_folder_gets_files_and_marker(tmp_path: Path) -> None:
    write_outputs(tmp_path / "out", fill_ab)
    assert sorted(os.listdir(tmp_path / "out")) == [MARKER, "model.mlir", "report.json"]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_earlier_output_is_swapped_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.mlir").write_text("old model")
    (out / "kernels.py").write_text("old kernels")  # the compiler's own: a stale one may go
    if not exchange:
        monkeypatch.setattr(outputs, "_exchange", lambda a, b: False)
    write_outputs(out, fill_ab)
    assert (out / "model.mlir").read_text() == "new model"
    assert not (out / "kernels.py").exists()
    assert leftovers(tmp_path) == []


def test_foreign_files_are_never_removed(tmp_path: Path) -> None:
    """--force (or a marker) into a folder with other files: only the compiler's files change."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.py").write_text("user's model")
    (out / "model.mlir").write_text("old model")
    write_outputs(out, fill_ab)
    assert (out / "model.py").read_text() == "user's model"
    assert (out / "model.mlir").read_text() == "new model"
    assert leftovers(tmp_path) == []


def test_symlinked_output_keeps_the_link(tmp_path: Path) -> None:
    target = tmp_path / "real"
    target.mkdir()
    (target / "model.mlir").write_text("old model")
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    write_outputs(link, fill_ab)
    assert link.is_symlink()
    assert (target / "model.mlir").read_text() == "new model"
    assert leftovers(tmp_path) == []


def test_dot_dot_and_cwd_are_written_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`-o ..` and `-o .` holding only compiler files are never renamed away under the shell."""
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "model.mlir").write_text("old model")
    monkeypatch.chdir(out / "sub")
    (out / "sub" / "model.mlir").write_text("x")  # sub: only compiler names, and it is the cwd
    write_outputs(Path("."), fill_ab)
    assert (out / "sub" / "model.mlir").read_text() == "new model" and Path.cwd() == out / "sub"
    monkeypatch.chdir(out)
    shutil.rmtree(out / "sub")
    (out / "sub").mkdir()
    monkeypatch.chdir(out / "sub")
    write_outputs(Path(".."), fill_ab)  # out holds sub/, not a compiler file: files merged in
    assert (out / "model.mlir").read_text() == "new model" and (out / "sub").is_dir()
    assert leftovers(out) == [] and leftovers(tmp_path) == []


def test_temporary_inside_dir_on_another_file_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A DIR on another file system than its parent (a mounted volume) is written from inside."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.mlir").write_text("old model")
    real_stat = os.stat

    def stat(path: object, *a: object, **k: object) -> os.stat_result:
        st = real_stat(path, *a, **k)  # type: ignore[arg-type]
        if Path(os.fspath(path)) == out:  # type: ignore[arg-type]
            return os.stat_result((st.st_mode, st.st_ino, st.st_dev + 1, *tuple(st)[3:]))
        return st

    monkeypatch.setattr(outputs.os, "stat", stat)
    homes: list[Path] = []
    write_outputs(out, lambda tmp: (homes.append(tmp.parent), fill_ab(tmp)))
    assert homes == [out]
    assert (out / "model.mlir").read_text() == "new model"
    assert leftovers(out) == [] and leftovers(tmp_path) == []


def test_writable_dir_in_a_read_only_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writable DIR whose parent cannot be written: the temporary goes inside DIR."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.mlir").write_text("old model")
    real = outputs._check_writable

    def check(folder: Path, what: str) -> None:
        if Path(folder) == tmp_path:
            raise OutputError("read-only")
        real(folder, what)

    monkeypatch.setattr(outputs, "_check_writable", check)
    homes: list[Path] = []
    write_outputs(out, lambda tmp: (homes.append(tmp.parent), fill_ab(tmp)))
    assert homes == [out] and (out / "model.mlir").read_text() == "new model"
    assert leftovers(out) == [] and leftovers(tmp_path) == []


def test_own_name_that_is_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.mlir").mkdir()
    with pytest.raises(OutputError, match="model.mlir there is not a file"):
        check_output_dir(tmp_path, force=True)


def test_trace_never_overwrites_a_user_file(tmp_path: Path) -> None:
    from rdu_compiler.runtime.trace import write_trace
    from rdu_compiler.tools.outputs import check_writable_path

    mine = tmp_path / "model.py"
    mine.write_text("user's model")
    with pytest.raises(OutputError, match="not an earlier trace"):
        check_writable_path(mine, "--trace", folder=False)
    check_writable_path(mine, "--trace", folder=False, force=True)
    trace = tmp_path / "t.json"
    write_trace(trace, {"sections": []})
    check_writable_path(trace, "--trace", folder=False)  # an earlier trace may be replaced
    assert sorted(os.listdir(tmp_path)) == ["model.py", "t.json"]  # no temporary left


def test_failure_while_writing_keeps_old_and_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.mlir").write_text("old model")

    def fail(tmp: Path) -> None:
        (tmp / "model.mlir").write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match="No space left"):
        write_outputs(out, fail)
    assert snapshot(out) == {"model.mlir": b"old model"}
    assert leftovers(tmp_path) == []


def test_check_output_dir_refuses_foreign_folder_and_file(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="--force"):
        check_output_dir(tmp_path)
    check_output_dir(tmp_path, force=True)
    with pytest.raises(OutputError, match="existing file"):
        check_output_dir(tmp_path / "notes.txt")
    with pytest.raises(OutputError, match="is a file"):
        check_output_dir(tmp_path / "notes.txt" / "sub")
    marked = tmp_path / "marked"
    marked.mkdir()
    (marked / MARKER).write_text("{}")
    (marked / "notes.txt").write_text("added by the user")
    check_output_dir(marked)  # an earlier output the user added to: allowed, notes.txt kept


DRIVER = textwrap.dedent(
    """\
    import os, signal, sys
    from pathlib import Path
    from rdu_compiler.tools import outputs

    point, signame, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    sig = getattr(signal, signame)

    def fill(tmp):
        (tmp / "model.mlir").write_text("new model")
        if point == "write":
            os.kill(os.getpid(), sig)
        (tmp / "report.json").write_text("{}")

    commit = outputs._commit
    def slow_commit(tmp, out_dir):
        if point == "commit":
            os.kill(os.getpid(), sig)
        commit(tmp, out_dir)
    outputs._commit = slow_commit
    try:
        outputs.write_outputs(out, fill)
    except outputs.Interrupted as e:
        sys.exit(128 + e.signum)
    """
)


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT", "SIGHUP"])
@pytest.mark.parametrize("foreign", [False, True], ids=["earlier-output", "with-user-file"])
@pytest.mark.parametrize("point", ["write", "commit"])
def test_signal_leaves_old_or_new_and_no_temporary(tmp_path: Path, point: str, signame: str, foreign: bool) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.mlir").write_text("old model")
    if foreign:
        (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(driver), point, signame, str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 128 + getattr(signal, signame), proc.stderr
    assert leftovers(tmp_path) == []
    if point == "write":  # interrupted before the commit: the old folder, untouched
        assert snapshot(out) == before
    else:  # the signal waited for the commit: the new folder, complete
        assert (out / "model.mlir").read_text() == "new model"
        assert (out / "report.json").exists() and (out / MARKER).exists()
    if foreign:
        assert (out / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------- the CLI


def test_output_at_model_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copy(MLP, proj / "mlp.py")
    code, _, err = run_cli([str(proj / "mlp.py"), *FAST, "-o", str(proj)], capsys)
    assert code == 2
    assert "--force" in one_paragraph(err)
    assert sorted(os.listdir(proj)) == ["mlp.py"]
    assert (proj / "mlp.py").read_bytes() == MLP.read_bytes()


def test_output_at_model_folder_with_force_keeps_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copy(MLP, proj / "mlp.py")
    code, _, err = run_cli([str(proj / "mlp.py"), *FAST, "-o", str(proj), "--force"], capsys)
    assert code == 0, err
    assert (proj / "mlp.py").read_bytes() == MLP.read_bytes()
    assert {"model.mlir", "weights.safetensors", "report.json", MARKER} <= set(os.listdir(proj))
    assert leftovers(tmp_path) == [] and leftovers(proj) == []


def test_output_dot_is_refused_then_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copy(MLP, tmp_path / "mlp.py")
    (tmp_path / "data.bin").write_bytes(b"\x00\x01")
    code, _, err = run_cli(["mlp.py", *FAST, "-o", "."], capsys)
    assert code == 2
    one_paragraph(err)
    assert sorted(os.listdir(tmp_path)) == ["data.bin", "mlp.py"]
    code, _, err = run_cli(["mlp.py", *FAST, "-o", ".", "--force"], capsys)
    assert code == 0, err
    assert (tmp_path / "data.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "mlp.py").exists() and (tmp_path / "model.mlir").exists()
    assert leftovers(tmp_path) == [] and leftovers(tmp_path.parent) == []


def test_rerun_replaces_earlier_output_and_keeps_added_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert run_cli([str(MLP), *FAST, "-o", str(out)], capsys)[0] == 0
    (out / "model.mlir").write_text("stale")
    (out / "my_notes.txt").write_text("mine")  # an earlier output (marker) the user added to
    code, _, err = run_cli([str(MLP), *FAST, "-o", str(out)], capsys)
    assert code == 0, err
    assert (out / "my_notes.txt").read_text() == "mine"
    assert (out / "model.mlir").read_text() != "stale"
    assert leftovers(tmp_path) == []


def test_failing_check_keeps_old_output(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from rdu_compiler.tools import rdu_compile

    out = tmp_path / "out"
    assert run_cli([str(MLP), *FAST, "-o", str(out)], capsys)[0] == 0
    (out / "model.mlir").write_text("previous program")
    before = snapshot(out)
    real = rdu_compile.compare

    def failing(outputs_: object, reference: object) -> dict[str, object]:
        return {**real(outputs_, reference), "ok": False, "rel_l2": 1.0}

    monkeypatch.setattr(rdu_compile, "compare", failing)
    code, _, err = run_cli([str(MLP), "--fabric", "tiny", "--check", "-o", str(out)], capsys)
    assert code == 2
    assert "--check failed" in one_paragraph(err)
    assert snapshot(out) == before
    assert leftovers(tmp_path) == []


CLI_DRIVER = textwrap.dedent(
    """\
    import os, signal, sys
    from rdu_compiler import api
    from rdu_compiler.tools.rdu_compile import main

    save = api.CompiledProgram.save
    def save_then_term(self, directory):  # SIGTERM half-way through writing the outputs
        save(self, directory)
        os.kill(os.getpid(), signal.SIGTERM)
    api.CompiledProgram.save = save_then_term
    main(sys.argv[1:])
    """
)


def test_cli_sigterm_while_writing_keeps_old_output(tmp_path: Path) -> None:
    """The installed command's path: SIGTERM during writing, exit 143, DIR as it was, no `.rdu-*`."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.mlir").write_text("old model")
    (out / "report.json").write_text("{}")  # an earlier output (a lone model.mlir needs --force)
    before = snapshot(out)
    driver = tmp_path / "driver.py"
    driver.write_text(CLI_DRIVER)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(driver), str(MLP), *FAST, "-o", str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert "Traceback" not in proc.stderr
    assert snapshot(out) == before
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------- review fixes (signals, stale files, markers)


def run_driver(tmp_path: Path, source: str, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(source))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(driver), *args], env=env, capture_output=True, text=True, timeout=120, **kw)  # type: ignore[call-overload]


THREADED_COMMIT = """\
    import os, signal, sys, threading, time
    from pathlib import Path
    from rdu_compiler.tools import outputs

    out = Path(sys.argv[1])
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()  # a torch/OpenMP worker
    outputs._exchange = lambda a, b: False  # the two-renames commit: DIR is briefly absent
    rename = os.rename
    def rename_then_term(a, b):
        rename(a, b)
        if Path(b).name == "old":  # DIR moved aside, the new one not yet in place
            os.kill(os.getpid(), signal.SIGTERM)  # blocked here, so another thread takes it
            time.sleep(0.3)  # ... and the handler runs in this thread now
    os.rename = rename_then_term
    def fill(tmp):
        (tmp / "model.mlir").write_text("new model")
        (tmp / "report.json").write_text("{}")
    try:
        outputs.write_outputs(out, fill)
    except outputs.Interrupted as e:
        sys.exit(128 + e.signum)
"""


def test_sigterm_to_another_thread_waits_for_the_commit(tmp_path: Path) -> None:
    """The sigmask holds signals for the main thread only; a process-directed SIGTERM taken
    by another thread still runs the handler in the main thread: it must wait too."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.mlir").write_text("old model")
    (out / "report.json").write_text("{}")
    proc = run_driver(tmp_path, THREADED_COMMIT, str(out))
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert (out / "model.mlir").read_text() == "new model" and (out / MARKER).exists()
    assert leftovers(tmp_path) == []


def test_per_file_commit_removes_the_earlier_runs_stale_files(tmp_path: Path) -> None:
    """A run that writes no weights (meta device) or no kernels.py into an earlier output
    with a user file: the previous model's weights and kernels.py do not stay beside it."""
    out = tmp_path / "out"
    write_outputs(out, lambda tmp: (fill_ab(tmp), (tmp / "weights.safetensors").write_bytes(b"old"),
                                    (tmp / "kernels.py").write_text("old kernels")))
    (out / "notes.txt").write_text("mine")  # so the commit goes file by file
    write_outputs(out, fill_ab)
    assert sorted(os.listdir(out)) == [MARKER, "model.mlir", "notes.txt", "report.json"]
    assert leftovers(tmp_path) == []


def test_per_file_commit_keeps_compiler_names_it_never_wrote(tmp_path: Path) -> None:
    """--force into a user's folder, then a rerun: a `kernels.py` the compiler did not
    write (not in the marker's list) is the user's and stays."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "kernels.py").write_text("user's kernels")
    (out / "model.py").write_text("user's model")
    write_outputs(out, fill_ab)
    write_outputs(out, fill_ab)
    assert (out / "kernels.py").read_text() == "user's kernels"
    assert (out / "model.mlir").read_text() == "new model"


def test_per_file_commit_in_the_cwd_removes_stale_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for name in ("model.mlir", "report.json", "weights.safetensors"):
        (out / name).write_text("old")
    monkeypatch.chdir(out)
    write_outputs(Path("."), fill_ab)
    assert sorted(os.listdir(out)) == [MARKER, "model.mlir", "report.json"]


IGNORED = """\
    import os, signal, sys
    from pathlib import Path
    from rdu_compiler.tools import outputs

    def fill(tmp):
        (tmp / "model.mlir").write_text("new model")
        os.kill(os.getpid(), signal.SIGHUP)  # ignored (nohup): must stay ignored
        (tmp / "report.json").write_text("{}")
    outputs.write_outputs(Path(sys.argv[1]), fill)
    sys.exit(3 if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN else 0)
"""


def test_ignored_signal_stays_ignored(tmp_path: Path) -> None:
    """Under nohup (SIGHUP ignored from the start), a SIGHUP while writing changes nothing."""
    out = tmp_path / "out"
    proc = run_driver(tmp_path, IGNORED, str(out), preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    assert proc.returncode == 0, proc.stderr
    assert (out / "model.mlir").read_text() == "new model" and (out / "report.json").exists()
    assert leftovers(tmp_path) == []


SECOND_SIGNAL = """\
    import os, signal, sys
    from pathlib import Path
    from rdu_compiler.tools import outputs

    first = sys.argv[2]
    def fill(tmp):
        (tmp / "model.mlir").write_text("half")
        if first == "signal":
            os.kill(os.getpid(), signal.SIGTERM)
        raise OSError(28, "No space left on device")
    held = outputs._signals_held
    def late_held():  # the clean-up's hold: a signal lands just before it begins
        os.kill(os.getpid(), signal.SIGINT)
        return held()
    outputs._signals_held = late_held
    try:
        outputs.write_outputs(Path(sys.argv[1]), fill)
    except outputs.Interrupted as e:
        sys.exit(128 + e.signum)
    except outputs.OutputError:
        sys.exit(2)
"""


@pytest.mark.parametrize("first", ["signal", "error"])
def test_second_signal_before_the_clean_up_still_removes_the_temporary(tmp_path: Path, first: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.mlir").write_text("old model")
    proc = run_driver(tmp_path, SECOND_SIGNAL, str(out), first)
    expected = signal.SIGTERM if first == "signal" else signal.SIGINT  # the first signal is reported
    assert proc.returncode == 128 + expected, proc.stderr
    assert snapshot(out) == {"model.mlir": b"old model"}
    assert leftovers(tmp_path) == []


def test_hand_written_model_mlir_is_not_an_earlier_output(tmp_path: Path) -> None:
    """No marker and not the compiler's full set (model.mlir and report.json): refused
    without --force, so a hand-written model.mlir is never replaced silently."""
    (tmp_path / "model.mlir").write_text("hand-written")
    with pytest.raises(OutputError, match="--force") as e:
        check_output_dir(tmp_path)
    assert "model.mlir" in str(e.value) and MARKER in str(e.value)
    check_output_dir(tmp_path, force=True)
    (tmp_path / "report.json").write_text("{}")  # the compiler's files: an earlier output
    check_output_dir(tmp_path)
    (tmp_path / "weights.safetensors").write_bytes(b"")
    check_output_dir(tmp_path)


def test_signals_as_exceptions_names_sighup() -> None:
    assert "SIGHUP" in (outputs.signals_as_exceptions.__doc__ or "")
