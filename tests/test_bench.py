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


@pytest.mark.slow
def test_time_to_quality_quick_run_writes_points_and_a_plot(tmp_path):
    """Smoke run of bench/time_to_quality.py (the DiT preset: the cheapest to compile)."""
    import math
    import subprocess
    import sys

    out = tmp_path / "ttq.json"
    proc = subprocess.run([sys.executable, str(_PATH.parent / "time_to_quality.py"), "--quick", "--preset", "mnist-dit",
                           "--out", str(out), "--run-root", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())["results"]
    points = res["points"]
    assert [p["step"] for p in points] == [3, 6]  # --quick: 6 steps, scored every 3
    assert [p["images_seen"] for p in points] == [3 * 32, 6 * 32]
    assert 0 < points[0]["train_s"] < points[1]["train_s"]  # fit's clock, from its log
    for p in points:
        assert p["num_samples"] == 30 and 0.0 <= p["accuracy"] <= 1.0 and math.isfinite(p["fid"])
    hit = res["time_to_target"]
    assert hit is None or hit["step"] == next(p["step"] for p in points if p["accuracy"] >= res["target"])
    assert "time to >= 98% right-class samples" in proc.stdout
    assert out.with_suffix(".png").stat().st_size > 1000
