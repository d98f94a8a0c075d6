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


# ---------------------------------------------------------------- issue 12: sampling FLOPs, processes, demo phases

def _bench_module(name):
    """A bench script as a module (its folder on sys.path, as when it runs)."""
    import sys

    folder = str(_PATH.parent)
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", _PATH.parent / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:  # bench/ holds a sampling.py: keep it off the path of later tests
        sys.path[:] = [p for p in sys.path if p != folder]
    return module


def test_sampler_specs_parse_and_reject_bad_items():
    SP = _bench_module("_sampler_program")
    assert SP.parse_samplers("ddim:50, dpmpp_2m:20") == [("ddim", 50), ("dpmpp_2m", 20)]
    assert SP.parse_samplers("") == []
    for bad in ("ddim", "ddim:0", "nope:10", "ddim:x"):
        with pytest.raises(ValueError, match="--samplers: expected NAME:STEPS") as err:
            SP.parse_samplers(bad)
        assert "\n" not in str(err.value)


def test_sampler_flops_two_counts_agree_or_raise():
    """XLA's count (loop body once, x steps) against forward x 2N rows x steps, by hand."""
    from types import SimpleNamespace

    SP = _bench_module("_sampler_program")
    assert SP.xla_counts_loop_once() in (True, False)  # it raises when XLA counts neither way
    fwd, n, steps = 1.0e8, 10, 4
    body = fwd * 2 * n * 1.001  # the CFG mix and the update add a little
    prog = SimpleNamespace(name="ddim", steps=steps, images=n, guidance_scale=3.0, forward_flops_per_image=fwd,
                           program_flops=body)
    c = SP.count_flops(prog, loop_once=True)
    assert c["rows_per_network_call"] == 2 * n
    assert c["flops_by_forward"] == pytest.approx(fwd * 2 * n * steps)
    assert c["flops"] == c["flops_by_xla"] == pytest.approx(body * steps)
    assert c["xla_over_forward"] == pytest.approx(1.001)
    whole = SP.count_flops(SimpleNamespace(**{**vars(prog), "program_flops": body * steps}), loop_once=False)
    assert whole["flops"] == pytest.approx(body * steps)
    unguided = SP.count_flops(SimpleNamespace(**{**vars(prog), "guidance_scale": 1.0, "program_flops": fwd * n}),
                              loop_once=True)
    assert unguided["rows_per_network_call"] == n
    with pytest.raises(AssertionError, match="disagree"):
        SP.count_flops(prog, loop_once=False)  # read as the whole loop, it is 4x too small
    missing = SP.count_flops(SimpleNamespace(**{**vars(prog), "program_flops": None}), loop_once=True)
    assert missing["flops"] == missing["flops_by_forward"] and missing["xla_over_forward"] is None


def test_efficiency_time_all_interleaves_fast_rounds_with_slow_runs():
    E = _bench_module("efficiency")
    order = []
    fast = {f: (lambda f=f: order.append(f)) for f in ("mm", "step")}
    slow = {"ddim": lambda: order.append("ddim") or 7.0}
    times = E.time_all(fast, slow, repeats=3, slow_repeats=2)
    assert order == ["mm", "step", "ddim", "mm", "step", "ddim", "mm", "step"]
    assert [len(times[k]) for k in ("mm", "step", "ddim")] == [3, 3, 2] and times["ddim"] == [7.0, 7.0]


def test_scaling_workers_marked_lines_and_layout_errors(capsys):
    import io
    import queue

    S = _bench_module("scaling")
    q = queue.Queue()
    S._pump(io.StringIO("[Gloo] Rank 0 is connected\n" + S.MARK + '{"seconds": 1.5}\n'), q)
    assert q.get_nowait() == {"seconds": 1.5} and q.get_nowait() is None  # None: the worker's output ended
    assert "[Gloo]" in capsys.readouterr().err  # other lines are passed on, not parsed
    args, layouts = S._parse(["--devices", "1,2", "--processes", "2", "--devices-per-process", "2"])
    assert layouts == [(1, 1), (1, 2), (2, 2)] and S._label(2, 2) == "2 proc x 2 dev"
    for bad in (["--processes", "3"], ["--devices", "0"], ["--devices", "x"], ["--devices", "", "--processes", ""]):
        with pytest.raises(SystemExit):
            S._parse(bad)
        assert "--devices" in capsys.readouterr().err


def test_demo_phase_table_from_synthetic_runs():
    D = _bench_module("demo_phases")
    runs = [{"wall_s": 100.0, "timings_s": {"toy figure": 10.0, "train": 60.0, "sample": 20.0, "total": 95.0}},
            {"wall_s": 120.0, "timings_s": {"toy figure": 12.0, "train": 70.0, "sample": 30.0, "total": 116.0}}]
    t = D.phase_table(runs)
    assert list(t)[:3] == ["toy figure", "train", "sample"]
    assert t["train"]["min_s"] == 60.0 and t["train"]["median_s"] == pytest.approx(65.0)
    assert t["set-up (imports, data, process start)"]["runs_s"] == [5.0, 4.0]  # wall - the demo's own total
    assert t["process wall"]["median_s"] == pytest.approx(110.0)


def _run_quick(script: str, out, *extra, timeout=900):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(_PATH.parent / script), "--quick", "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    return json.loads(out.read_text())["results"], proc.stdout


@pytest.mark.slow
@pytest.mark.heavy
def test_efficiency_quick_run_reports_sampling_next_to_training(tmp_path):
    res, stdout = _run_quick("efficiency.py", tmp_path / "e.json", "--no-peer")
    assert {s["sampler"] for s in res["samplers"]} == {"ddim", "dpmpp_2m"}
    train = {m["name"]: m for m in res["models"]}["mnist"]
    for s in res["samplers"]:
        assert s["flops_by_xla"] == pytest.approx(s["xla_program_flops"] * s["steps"])  # XLA counts the body once
        assert abs(s["xla_over_forward"] - 1) < 0.25 and s["rows_per_network_call"] == 2 * s["images"]
        for label, v in s["variants"].items():
            assert v["achieved_gflops_median"] == pytest.approx(s["flops"] / v["median_s"] / 1e9)
    for check in res["sampler_checks"].values():
        assert check["max_abs_diff_devices"] < 1e-3 and check["max_abs_diff_vs_sampling_sample"] < 1e-3
    for r in res["sampling_over_training"]:
        sampler = next(s for s in res["samplers"] if f"{s['sampler']}-{s['steps']}" == r["sampler"])
        assert r["ratio"] == pytest.approx(sampler["variants"][r["devices"]]["achieved_gflops_median"]
                                           / train["variants"][r["devices"]]["achieved_gflops_median"])
    assert "Sampling FLOP rate over the train step's" in stdout


@pytest.mark.slow
@pytest.mark.heavy
def test_scaling_quick_run_two_processes_agree_with_one(tmp_path):
    res, _ = _run_quick("scaling.py", tmp_path / "s.json")
    rows = {r["variant"]: r for r in res["rows"]}
    assert set(rows) == {"1 dev", "2 dev", "2 proc x 1 dev"}
    assert rows["2 proc x 1 dev"]["processes"] == 2 and rows["2 proc x 1 dev"]["devices"] == 2
    assert len(rows["2 proc x 1 dev"]["compile_s_per_process"]) == 2
    losses = [r["first_loss"] for r in rows.values()]
    assert max(losses) - min(losses) == pytest.approx(res["max_first_loss_diff"]) and res["max_first_loss_diff"] < 1e-4


@pytest.mark.slow
@pytest.mark.heavy
def test_demo_phases_quick_run_reads_the_demo_timings(tmp_path):
    res, stdout = _run_quick("demo_phases.py", tmp_path / "d.json")
    [run] = res["runs"]
    assert run["fast_mode"] is True and run["trained_here"] is True  # trained: the cache was empty
    phases = {k: v for k, v in run["timings_s"].items() if k != "total"}
    assert list(phases) == ["toy figure", "train", "sample", "evaluate", "figures"]
    assert sum(phases.values()) <= run["timings_s"]["total"] + 0.5 <= run["wall_s"] + 0.5
    assert res["phases"]["train"]["runs_s"] == [phases["train"]]
    assert "process wall" in stdout
