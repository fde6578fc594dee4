"""Writing rdu-compile's output folder without ever losing a user's files.

Rules (issue 10, part 0):

- Only the compiler's own files are ever replaced or removed: `model.mlir`,
  `weights.safetensors`, `report.json`, `kernels.py` and the marker `.rdu_output`
  (written in every output folder; it says the folder is one).
- `check_output_dir` runs before compiling: `-o` naming a file, a folder that cannot be
  written, or a non-empty folder that is not an earlier output (no marker, and not only
  the compiler's files with model.mlir and report.json among them) is refused, unless
  `--force`. With `--force` (or a marker) the
  compiler's files are replaced one by one and every other file is left alone.
- `write_outputs` writes everything into a temporary `.rdu-*` folder beside DIR, then
  commits: a new DIR is renamed into place; a DIR holding only the compiler's files is
  swapped with the new one (renameat2 RENAME_EXCHANGE, one atomic step where the kernel
  has it) and the old one removed; otherwise the files are moved in one by one.
  SIGTERM/SIGINT/SIGHUP while writing become an exception (the temporary is removed, DIR is
  untouched); during the commit and the clean-up they are held back until it is done.
  So after any signal or failure DIR is the old one or the new one, and no temporary
  is left. (SIGKILL and power loss are not covered.)
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from rdu_compiler.errors import RduError

MARKER = ".rdu_output"
OWN_FILES = frozenset({"model.mlir", "weights.safetensors", "report.json", "kernels.py", MARKER})
_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, n))  # SIGHUP: terminal closed


class OutputError(RduError):
    """The output folder (`-o`), `--plot` folder or `--trace` file cannot be used."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM, SIGINT or SIGHUP arrived while outputs were being written (`signum` says which)."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


_ALWAYS = frozenset({"model.mlir", "report.json"})  # every run writes these


def _is_output(entries: list[str]) -> bool:
    """An earlier output: it has the marker, or (written before the marker existed) holds
    only the compiler's names and at least model.mlir and report.json; a lone hand-written
    model.mlir is not one."""
    return MARKER in entries or (all(e in OWN_FILES for e in entries) and _ALWAYS <= set(entries))


def check_output_dir(out_dir: Path, force: bool = False) -> None:
    """Refuse an output folder before any work is done.

    Raises:
        OutputError: `out_dir` is an existing file, cannot be created or written, or is a
            non-empty folder that does not look like an earlier output and `force` is False.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"-o {out_dir}: this is an existing file, not a folder; name a folder for the outputs")
    if out_dir.is_dir():
        entries = sorted(os.listdir(out_dir))
        clash = [e for e in entries if e in OWN_FILES and not (out_dir / e).is_file()]
        if clash:
            raise OutputError(
                f"-o {out_dir}: {clash[0]} there is not a file (a folder or a special file), so the compiler "
                "cannot replace it; move it away or choose another folder"
            )
        if entries and not _is_output(entries) and not force:
            foreign = [e for e in entries if e not in OWN_FILES]
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            if not foreign:  # only compiler names, but no marker and not model.mlir + report.json
                shown = f"{', '.join(entries)} without the marker {MARKER} or a report.json, so possibly hand-written"
            raise OutputError(
                f"-o {out_dir}: the folder is not empty and is not an earlier rdu-compile output "
                f"(it holds {shown}); choose a new or empty folder, or pass --force to write the "
                f"compiler's files ({', '.join(sorted(OWN_FILES - {MARKER}))}) into it, leaving everything else there untouched"
            )
        _check_writable(out_dir, f"-o {out_dir}")
        return
    _check_creatable(out_dir, f"-o {out_dir}")


def check_writable_path(path: Path, what: str, folder: bool, force: bool = False) -> None:
    """`--plot DIR` (folder=True) or `--trace FILE`: refuse before compiling what cannot be written.
    An existing `--trace` file is replaced only if it is an earlier trace (it starts with
    `{"traceEvents"`) or with `force`.

    Raises:
        OutputError: the path (or the folder it would be created in) is not writable, is a
            file where a folder is needed or the reverse, or is a file that is not a trace.
    """
    if path.exists():
        if folder and not path.is_dir():
            raise OutputError(f"{what} {path}: this is an existing file, not a folder; name a folder")
        if not folder and path.is_dir():
            raise OutputError(f"{what} {path}: this is a folder; name the file to write")
        if not folder and not force and not _is_trace(path):
            raise OutputError(
                f"{what} {path}: the file exists and is not an earlier trace, so it would be overwritten; "
                "name a new file, or pass --force to replace it"
            )
        _check_writable(path if folder else path.parent, f"{what} {path}")
        return
    _check_creatable(path if folder else path.parent, f"{what} {path}")


def _is_trace(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16).lstrip().startswith(b'{"traceEvents"')
    except OSError:
        return False


def _check_writable(folder: Path, what: str) -> None:
    """Probe with an unnamed temporary file (O_TMPFILE where the kernel has it): permission
    bits alone miss read-only file systems and pseudo file systems such as /proc."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        why = "" if e.errno == errno.ENOENT else f" ({e.strerror or e})"  # ENOENT: /proc and the like
        raise OutputError(f"{what}: the folder {folder} is not writable{why}; choose another path or fix its permissions") from e


def _check_creatable(path: Path, what: str) -> None:
    """The nearest existing ancestor of `path` must be a writable folder."""
    ancestor = path.absolute()
    while not ancestor.exists():
        if ancestor.is_symlink():  # a dangling link
            raise OutputError(f"{what}: {ancestor} is a broken symbolic link; remove it or choose another path")
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{what}: {ancestor} is a file, so no folder can be created under it; choose another path")
    _check_writable(ancestor, what)


# Signal state (main thread only). Python runs every signal handler in the main thread,
# whichever thread the kernel gave the signal to, so a sigmask cannot hold a
# process-directed signal once other threads (torch, OpenMP) exist; these flags do.
_holding = 0  # > 0 inside `_signals_held`: the handler records signals instead of raising
_raised = False  # the handler raised `Interrupted`: later signals wait, so the clean-up runs
_held: list[int] = []  # signals recorded meanwhile, oldest first
_depth = 0  # nesting of `signals_as_exceptions`


def _handler(signum: int, _frame: object) -> None:
    global _raised
    if _holding or _raised:
        _held.append(signum)
        return
    _raised = True
    raise Interrupted(signum)


def _caught() -> list[int]:
    """The signals to turn into exceptions: ours, less those ignored (nohup, `cmd &`)."""
    return [s for s in _SIGNALS if signal.getsignal(s) is not signal.SIG_IGN]


@contextlib.contextmanager
def signals_as_exceptions() -> Iterator[None]:
    """While inside, SIGTERM, SIGINT and SIGHUP raise `Interrupted` (main thread only;
    elsewhere a no-op). A signal whose handler is SIG_IGN (nohup, a job started with `&`)
    stays ignored. After one `Interrupted`, and inside `_signals_held`, further signals are
    recorded instead of raised, so clean-up code runs to its end."""
    global _depth, _holding, _raised
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if not _depth:  # a fresh outermost scope: nothing raised or recorded yet
        _raised = False
        _held.clear()
    # None: a handler set outside Python, which could not be put back: left alone
    old = {s: h for s in _caught() if (h := signal.getsignal(s)) is not None}
    _depth += 1
    try:
        for s in old:
            signal.signal(s, _handler)
        yield
    finally:
        _holding += 1  # first: a signal now cannot skip the restoring below
        for s, h in old.items():
            signal.signal(s, h)
        _holding -= 1
        _depth -= 1
        if not _depth:  # a signal that landed while restoring (none raised yet) is not lost
            signum = None if _raised or not _held else _held[0]
            _raised = False
            _held.clear()
            if signum is not None:
                raise Interrupted(signum)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGTERM/SIGINT/SIGHUP wait until the block is done, then the first one raises
    `Interrupted` (unless one was raised already). The main thread's sigmask is only an
    extra: the `_holding` flag is what holds a signal another thread received."""
    global _holding, _raised
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _holding += 1
    mask = _caught()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, mask) if mask else None
    try:
        yield
    finally:
        if old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)  # pending ones run the handler: recorded
        _holding -= 1
        if not _holding and _held and not _raised:
            signum = _held[0]
            _raised = True
            _held.clear()
            raise Interrupted(signum)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return rc == 0


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def write_outputs(out_dir: Path, fill: Callable[[Path], None]) -> None:
    """Write DIR: `fill(tmp)` writes the compiler's files into a temporary folder beside
    DIR (inside DIR when DIR is on another file system than its parent: a mount point, a
    link to another disk), then they are committed (see the module docstring).

    Raises:
        OutputError: DIR or its parent cannot be written (an OSError while writing).
        Interrupted: SIGTERM/SIGINT/SIGHUP arrived; DIR is then the old one (signal during
            writing) or the new one (signal during the commit).
    """
    out_dir = Path(os.path.abspath(out_dir))  # "..", "." resolved lexically; a final symlink kept
    tmp: Path | None = None
    with signals_as_exceptions():
        try:
            try:
                out_dir.parent.mkdir(parents=True, exist_ok=True)
                tmp = Path(tempfile.mkdtemp(prefix=".rdu-", dir=_temp_home(out_dir)))
                fill(tmp)
                written = sorted(p.name for p in tmp.iterdir())
                (tmp / MARKER).write_text(json.dumps({"written_by": "rdu-compile", "files": written}) + "\n")
                os.chmod(tmp, 0o755)
                for f in tmp.iterdir():
                    os.chmod(f, 0o644)
                with _signals_held():
                    _commit(tmp, out_dir)
            except OSError as e:
                raise OutputError(
                    f"-o {out_dir}: cannot write the outputs ({e}); choose another folder or free space"
                ) from e
        finally:  # remove the temporary whatever lands meanwhile; then the first signal raises
            first: Interrupted | None = None
            while tmp is not None:
                try:
                    with _signals_held():
                        if tmp.exists():
                            shutil.rmtree(tmp, ignore_errors=True)
                    break
                except Interrupted as e:  # landed before the hold began (or was held in it)
                    first = first or e
            if first is not None:
                raise first


def _temp_home(out_dir: Path) -> Path:
    """Where the temporary goes: beside DIR, or inside an existing DIR that is on another
    file system than its parent (renames cannot cross file systems) or whose parent cannot
    be written (a writable folder in a read-only one)."""
    if out_dir.is_dir():
        if os.stat(out_dir).st_dev != os.stat(out_dir.parent).st_dev:
            return out_dir
        try:
            _check_writable(out_dir.parent, "")
        except OutputError:
            return out_dir
    return out_dir.parent


def _commit(tmp: Path, out_dir: Path) -> None:
    """Move the new outputs in `tmp` to `out_dir` (signals are held back meanwhile)."""
    if not out_dir.exists():
        os.rename(tmp, out_dir)
        return
    entries = [e for e in os.listdir(out_dir) if out_dir / e != tmp]
    whole = (
        entries
        and tmp.parent != out_dir
        and all(e in OWN_FILES for e in entries)
        and not out_dir.is_symlink()  # keep the user's link: write into its target instead
        and not _inside(Path(os.path.realpath(os.getcwd())), Path(os.path.realpath(out_dir)))  # keep the cwd
    )
    if whole and _exchange(tmp, out_dir):
        shutil.rmtree(tmp)  # now the old outputs
        return
    if whole:  # no renameat2: old aside, new in (signals are held, so no window for them)
        aside = Path(tempfile.mkdtemp(prefix=".rdu-old-", dir=out_dir.parent))
        os.rename(out_dir, aside / "old")
        try:
            os.rename(tmp, out_dir)
        except OSError:
            os.rename(aside / "old", out_dir)
            raise
        finally:
            shutil.rmtree(aside, ignore_errors=True)
        return
    # A folder with other files (or the cwd, a link, the temporary inside): replace the
    # compiler's files one by one, and remove those the earlier run wrote and this one did not
    # (weights.safetensors after a meta-device run, kernels.py after a non-triton one).
    new = sorted(tmp.iterdir())
    stale = _written_before(out_dir, entries) - {f.name for f in new}
    for f in new:
        os.replace(f, out_dir / f.name)
    for name in sorted(stale):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(out_dir / name)


def _written_before(out_dir: Path, entries: list[str]) -> set[str]:
    """The compiler's files in `out_dir` (names in `entries`, the marker aside) that an
    earlier run wrote: those its marker lists; all of them when the marker has no readable
    list or when the folder holds only the compiler's names; none in a folder that was
    forced (--force) and has no marker, where such names are the user's."""
    own = {e for e in entries if e in OWN_FILES - {MARKER}}
    if MARKER in entries:
        try:
            listed = json.loads((out_dir / MARKER).read_text()).get("files")
        except (OSError, ValueError, AttributeError):
            listed = None
        if isinstance(listed, list) and all(isinstance(n, str) for n in listed):
            return own & set(listed)
        return own
    return own if all(e in OWN_FILES for e in entries) else set()
