"""rdu-coe (issue 14): bad input is one `error:` paragraph, exit 2, nothing written; a
study's arithmetic with the compiler's step times replaced by fixed ones (no compile)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rdu_compiler.coe import llama, study
from rdu_compiler.coe.config import CoEConfigError, load_config
from rdu_compiler.tools.rdu_coe import main

GOOD = """[node]
fabric = "sn40l-node8"
[router]
shape = "llama2-7b"
[experts]
shape = "llama2-7b"
count = 150
[requests]
count = 50
prompt = 128
output = 20
"""


def _bad(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None, *extra: str) -> str:
    cfg = tmp_path / "coe.toml"
    if text is not None:
        cfg.write_text(text)
    out = tmp_path / "out.json"
    with pytest.raises(SystemExit) as e:
        main([str(cfg), "--json", str(out), *extra])
    assert e.value.code == 2
    assert not out.exists() and not list(tmp_path.glob(".rdu-coe-*"))
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and err.count("\n") == 1
    return err


@pytest.mark.parametrize("text, extra, words", [
    (None, (), "no such file"),
    ("[node\n", (), "not valid TOML"),
    (GOOD.replace("count = 150", "count = 150\ncolour = 1"), (), "[experts].colour"),
    (GOOD.replace('shape = "llama2-7b"\n[experts]', 'shape = "gpt5"\n[experts]'), (), "[router].shape = 'gpt5'"),
    (GOOD.replace("prompt = 128", "prompt = -3"), (), "[requests].prompt = -3"),
    (GOOD.replace("prompt = 128", 'prompt = "long"'), (), "[requests].prompt = 'long' should be a int"),
    (GOOD.replace("count = 50", "trace = [0, 150]"), (), "outside 0..149"),
    ('[node]\nfabric = "tiny"\n[router]\nmodel = "r.py"\n[experts]\nmodels = ["e.py"]\n', (), "r.py does not exist"),
    (GOOD.replace('fabric = "sn40l-node8"\n', ""), (), "missing [node].fabric"),
    (GOOD, ("--compare", "dgx-b200"), "there is no GPU node 'dgx-b200'"),
    (GOOD, ("--requests", "0"), "--requests must be at least 1"),
    (GOOD, ("--plot", "/nonexistent/dir/pics"), "--plot /nonexistent/dir/pics: not a folder"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, text, extra, words) -> None:
    assert words in _bad(tmp_path, capsys, text, *extra)


def test_experts_that_exceed_ddr_are_refused_before_compiling(tmp_path, capsys, monkeypatch) -> None:
    def no_compile(*args: object) -> dict[str, float]:
        raise AssertionError("compiled before checking DDR")

    monkeypatch.setattr(study, "rdu_tp_step_s", no_compile)
    err = _bad(tmp_path, capsys, GOOD.replace("count = 150", "count = 1000"))
    assert "1000 experts need 13476.831 GB of DDR" in err and "at most 979 fit" in err


def test_a_study_with_fixed_step_times(tmp_path, capsys, monkeypatch) -> None:
    def fixed(spec, fabric, tp, seq, past, batch) -> dict[str, float]:
        return {"step_s": 0.01 if seq > 1 else 0.002, "activation_bytes": 1e9}

    monkeypatch.setattr(llama, "rdu_tp_step_s", fixed)
    monkeypatch.setattr(study, "rdu_tp_step_s", fixed)
    (tmp_path / "coe.toml").write_text(GOOD)
    out = tmp_path / "r.json"
    main([str(tmp_path / "coe.toml"), "--compare", "dgx-h100,dgx-a100", "--json", str(out), "--plot", str(tmp_path / "pics")])
    assert sorted(p.name for p in (tmp_path / "pics").iterdir()) == ["breakdown.png", "footprint.png"]
    r = json.loads(out.read_text())
    rdu = r["rdu"]
    assert rdu["totals"]["router_s"] == pytest.approx(50 * 0.01)
    assert rdu["totals"]["exec_s"] == pytest.approx(50 * (0.01 + 19 * 0.002))
    misses = sum(not q["hit"] for q in rdu["requests"])
    copies = rdu["totals"]["switch_s"] + rdu["totals"]["hidden_switch_s"]  # prefetch hides part of each copy
    assert copies == pytest.approx(misses * llama.LLAMA2_7B.weight_bytes / 8 / 125e9)
    assert rdu["prefetch"] and rdu["totals"]["hidden_switch_s"] > 0
    assert r["switch_one_expert_s"]["dgx-a100"] / r["switch_one_expert_s"]["rdu"] == pytest.approx(1e12 / 32e9)
    # 150 x 13.48 GB = 2.02 TB: 2 H100 boxes (2 TB host memory each) and 3 A100 boxes (1 TB) hold them
    assert r["dgx-h100"]["machine"] == "dgx-h100 x2" and r["dgx-a100"]["machine"] == "dgx-a100 x3"
    assert r["footprint"]["dgx-h100"]["rdu_nodes"] == 1 and r["footprint"]["dgx-h100"]["gpu_boxes_hbm"] == 4
    sweep = r["footprint_sweep"]["dgx-h100"]
    assert [f["experts"] for f in sweep][-1] == 850 and sweep[-1]["gpu_boxes_hbm"] == 19 and sweep[-1]["rdu_nodes"] == 1
    assert r["speedup"]["dgx-h100"] == pytest.approx(r["dgx-h100"]["totals"]["total_s"] / rdu["totals"]["total_s"])
    assert [q["expert"] for q in r["dgx-h100"]["requests"]] == [q["expert"] for q in rdu["requests"]]
    assert "speedup" in capsys.readouterr().out


def test_config_paths_are_relative_to_the_file(tmp_path) -> None:
    (tmp_path / "r.py").write_text("")
    (tmp_path / "e.py").write_text("")
    (tmp_path / "coe.toml").write_text('[node]\nfabric = "tiny"\n[router]\nmodel = "r.py"\n[experts]\nmodels = ["e.py"]\n')
    cfg = load_config(tmp_path / "coe.toml")
    assert cfg.router_model == str(tmp_path / "r.py") and cfg.expert_models == (str(tmp_path / "e.py"),)
    assert not cfg.builtin and cfg.expert_count == 1
    (tmp_path / "bad.toml").write_text('[node]\nfabric = "tiny"\n[router]\nmodel = "r.py"\n[experts]\nshape = "llama2-7b"\n')
    with pytest.raises(CoEConfigError, match="both be built-in shapes or both model files"):
        load_config(tmp_path / "bad.toml")


def test_model_file_experts_run_through_the_cli(tmp_path, capsys) -> None:
    src = ("import torch\nfrom torch import nn\ntorch.manual_seed({seed})\n"
           "model = nn.Sequential({body}).eval()\nexample_inputs = (torch.randn(1, 8),)\n")
    (tmp_path / "router.py").write_text(src.format(seed=0, body="nn.Linear(8, 2)"))
    for i in (1, 2):
        (tmp_path / f"e{i}.py").write_text(src.format(seed=i, body="nn.Linear(8, 4), nn.Tanh(), nn.Linear(4, 8)"))
    (tmp_path / "coe.toml").write_text('[node]\nfabric = "tiny"\nsockets = 2\n[router]\nmodel = "router.py"\n'
                                       '[experts]\nmodels = ["e1.py", "e2.py"]\n[requests]\ntrace = [0, 1, 1, 0]\n')
    main([str(tmp_path / "coe.toml"), "--json", str(tmp_path / "r.json")])
    r = json.loads((tmp_path / "r.json").read_text())
    expert_bytes = (8 * 4 + 4 + 4 * 8 + 8) * 4
    assert r["expert_bytes"] == [expert_bytes] * 2
    assert [q["hit"] for q in r["rdu"]["requests"]] == [False, False, True, True]
    # tiny has one socket per spec: its DDR bandwidth (12.8 GB/s) is the copy path; 2 sockets share the copy
    t = r["rdu"]["totals"]
    assert t["switch_s"] + t["hidden_switch_s"] == pytest.approx(2 * expert_bytes / 2 / 12.8e9)
    assert "tiny x2" in capsys.readouterr().out
    main([str(tmp_path / "coe.toml"), "--no-prefetch", "--json", str(tmp_path / "r.json")])
    t = json.loads((tmp_path / "r.json").read_text())["rdu"]["totals"]
    assert t["switch_s"] == pytest.approx(2 * expert_bytes / 2 / 12.8e9) and t["hidden_switch_s"] == 0.0
