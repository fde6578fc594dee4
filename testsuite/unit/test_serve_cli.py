"""rdu-serve: bad input exits 2 with one `error:` paragraph and writes nothing; a good run
prints the metrics and writes JSON (latency model stubbed by the synthetic one: the CLI's
plumbing, not the compiler's numbers)."""

from __future__ import annotations

import json

import pytest

from rdu_compiler.serve import latency
from rdu_compiler.tools import rdu_serve
from testsuite.unit.serve_fixtures import synthetic_model


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        rdu_serve.main(argv)
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "gpt5"], "unknown model 'gpt5'"),
        (["--policy", "disaggregated"], "needs --sockets >= 2"),
        (["--sockets", "4"], "has 1 socket(s)"),
        (["--fabric", "sn40l-node8", "--sockets", "4", "--policy", "disaggregated:1:2"], "P + D = 3"),
        (["--fabric", "sn40l-node8", "--sockets", "0"], "--sockets must be >= 1"),
        (["--policy", "disaggregated:0:2"], "whole numbers >= 1"),
        (["--policy", "static:2"], "strictly between 0 and 1"),
        (["--rate", "-1"], "--rate must be a positive number"),
        (["--rate", "abc"], "invalid float value"),
        (["--goodput", "--slo-ttft", "1"], "--goodput needs both"),
        (["--trace", "chat"], "unknown trace 'chat'"),
        (["--trace", "missing.csv"], "cannot read the trace"),
        (["--shares", "0.5,x"], "comma-separated numbers"),
        (["--json", "/nonexistent-dir/m.json"], "its directory does not exist"),
    ],
)
def test_bad_input_exits_2(argv: list[str], message: str, capsys, tmp_path) -> None:
    out_json = tmp_path / "out.json"
    extra = [] if "--json" in argv else ["--json", str(out_json)]
    code, out, err = run([*argv, *extra], capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out_json.exists() and list(tmp_path.iterdir()) == []


def test_bad_csv_row_names_line_and_column(capsys, tmp_path) -> None:
    bad = tmp_path / "t.csv"
    bad.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,12,3\n0.5,twelve,3\n")
    code, _, err = run(["--trace", str(bad)], capsys)
    assert code == 2 and "line 3, column num_prefill_tokens" in err


def test_good_run_prints_metrics_and_writes_json(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(latency, "build_latency_model", lambda *a, **k: synthetic_model())
    csv = tmp_path / "t.csv"
    csv.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,100,5\n0.001,50,8\n0.002,80,2\n")
    out_json = tmp_path / "m.json"
    code, out, _ = run(["--model", "tiny", "--trace", str(csv), "--policy", "static:0.5", "--shares", "0.25,0.5,0.75",
                        "--slo-ttft", "1", "--slo-tbt", "1", "--goodput", "--json", str(out_json),
                        "--plot", str(tmp_path / "plots")], capsys)
    assert code == 0
    assert "TTFT p50/p95/p99" in out and "SLO attainment      100.0 %" in out and "goodput" in out
    doc = json.loads(out_json.read_text())
    assert doc["metrics"]["finished"] == 3 and doc["goodput_rps"] > 0
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["split.png", "tbt_cdf.png", "ttft_cdf.png"]


def test_disaggregated_run_on_a_node_prints_split_and_transfers(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(latency, "build_latency_model", lambda *a, **k: synthetic_model())
    csv = tmp_path / "t.csv"
    csv.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,100,5\n0.001,50,8\n0.002,80,2\n")
    out_json = tmp_path / "m.json"
    code, out, _ = run(["--model", "tiny", "--fabric", "sn40l-node8", "--sockets", "4", "--trace", str(csv),
                        "--policy", "disaggregated", "--json", str(out_json)], capsys)
    assert code == 0
    doc = json.loads(out_json.read_text())
    assert [s["prefill_sockets"] for s in doc["split_sweep"]] == [1, 2, 3]
    assert doc["policy"].startswith("disaggregated:") and doc["kv_transfers"]["count"] == 3
    assert doc["kv_transfers"]["bytes_mean"] == (100 + 50 + 80) / 3 * 256  # tiny: 256 B of KV a token
    assert "KV transfers        3" in out and doc["metrics"]["finished"] == 3
