"""The layering of docs/design.md holds (issue 12): import-linter's contracts in
pyproject.toml (imports only go down the layers; no cycle among the modules of any
package), and no source file grows past the size the layout asks for."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 650  # "files under ~600 lines" (issue 12), with a margin for docstrings


def test_import_contracts_are_kept(capsys) -> None:
    from importlinter.cli import lint_imports

    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    out = capsys.readouterr().out
    assert code == 0, f"broken import contracts:\n{out[out.find('Broken contracts'):][:3000]}"
    assert "2 kept, 0 broken" in out


def test_the_layers_contract_lists_every_package() -> None:
    """`exhaustive = true`: a new top-level module must be given its layer."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c for c in config if c["type"] == "layers")
    assert layers["exhaustive"] is True and layers["containers"] == ["rdu_compiler"]


def test_no_source_file_is_too_long() -> None:
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "rdu_compiler").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these files (over {MAX_LINES} lines): {long}"
