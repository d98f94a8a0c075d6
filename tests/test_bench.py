"""The benchmarks' shared helpers (bench/_common.py) on synthetic timings; no benchmark runs."""

import importlib.util
import json
import pathlib
import statistics

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[1] / "bench" / "_common.py"
_spec = importlib.util.spec_from_file_location("bench_common", _PATH)
C = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(C)


def test_summarize_min_median_against_statistics():
    runs = [0.31, 0.12, 0.5, 0.2, 0.25, 0.9]
    s = C.summarize(runs)
    assert s["n"] == 6 and s["min_s"] == 0.12
    assert s["median_s"] == pytest.approx(statistics.median(runs))
    assert s["median_s"] == pytest.approx((0.25 + 0.31) / 2)
    assert s["runs_s"] == runs
    r = C.rate(s, 128)
    assert r["best"] == pytest.approx(128 / 0.12) and r["median"] == pytest.approx(128 / 0.28)


@pytest.mark.parametrize("bad", [[], [0.1, -0.2], [float("nan")]])
def test_summarize_rejects_bad_timings(bad):
    with pytest.raises(ValueError, match="summarize"):
        C.summarize(bad)


def test_interleaved_alternates_and_uses_reported_times():
    order = []
    out = C.interleaved({"a": lambda: order.append("a") or 2.5, "b": lambda: order.append("b")}, 3)
    assert order == ["a", "b"] * 3
    assert out["a"] == [2.5] * 3  # a reported time wins over the wall clock
    assert len(out["b"]) == 3 and all(0 <= t < 1 for t in out["b"])
    with pytest.raises(ValueError, match="repeats"):
        C.interleaved({"a": lambda: None}, 0)


def test_write_json_schema(tmp_path):
    path = C.write_json("synthetic", [{"x": 1}], {"quick": True}, out=str(tmp_path / "s.json"))
    data = json.loads(path.read_text())
    assert tuple(data) == C.SCHEMA_KEYS
    assert data["bench"] == "synthetic" and data["schema"] == C.SCHEMA_VERSION
    assert data["args"] == {"quick": True} and data["results"] == [{"x": 1}]
    machine = data["machine"]
    assert machine["cpu_count"] >= 1 and isinstance(machine["cpu_model"], str)


def test_print_table_aligns_columns(capsys):
    text = C.print_table(["name", "value"], [["a", 1.23456], ["long name", 1234.5], ["c", None]])
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1  # right-aligned to equal widths
    assert "1.235" in text and "1234.5" in text and lines[-1].endswith("-")


def test_missing_peer_env_is_reported_not_raised(tmp_path, capsys):
    with pytest.raises(C.PeerUnavailable, match="make bench-peer"):
        C.Peer(python=tmp_path / "no-such-python")
    assert C.open_peer(False) is None
    assert "skipped" in capsys.readouterr().out
