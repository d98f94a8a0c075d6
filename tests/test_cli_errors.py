"""Bad command lines, as a newcomer types them: one line on stderr naming the flag, the
right exit status, no traceback, and nothing written.

Every case runs ``python -m diffusion_jax`` as a subprocess in its own empty working
folder with its own empty model cache; afterwards that folder must still be empty (no
output, no half-written file, no cache entry) and the shared input files unchanged.
The checks run before JAX touches a device: the cases (all but ``demo``'s, whose module
makes a key on import) run with ``JAX_PLATFORMS`` naming a platform that does not exist,
so a check that came after any JAX work would fail with a different message. A case
costs one to two seconds of start-up; the table runs a few processes at a time.
"""

from __future__ import annotations

import concurrent.futures
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from diffusion_jax import cli
from diffusion_jax.cli import models

# (id, argv, exit status, text stderr must contain); {in} is the folder of input files.
# Status 2: bad flags or input. Status 1: a failure while working (here: nothing trained yet).
CASES = [
    # the command line itself
    ("no-command", [], 2, "COMMAND"),
    ("unknown-command", ["frobnicate"], 2, "COMMAND"),
    ("unknown-flag", ["toy", "--bogus"], 2, "--bogus"),
    ("missing-value", ["toy", "--num-samples"], 2, "--num-samples"),
    ("abbreviated-flag", ["sample", "--per", "3"], 2, "--per"),
    # toy
    ("toy-zero-samples", ["toy", "--num-samples", "0"], 2, "--num-samples"),
    ("toy-text-samples", ["toy", "--num-samples", "abc"], 2, "--num-samples"),
    ("toy-huge-samples", ["toy", "--num-samples", "2000000"], 2, "--num-samples"),
    ("toy-label-too-big", ["toy", "--guided-label", "7"], 2, "--guided-label"),
    ("toy-label-negative", ["toy", "--guided-label", "-1"], 2, "--guided-label"),
    ("toy-label-null", ["toy", "--guided-label", "3"], 2, "--guided-label"),
    ("toy-scale-nan", ["toy", "--guidance-scale", "nan"], 2, "--guidance-scale"),
    ("toy-scale-inf", ["toy", "--guidance-scale", "inf"], 2, "--guidance-scale"),
    ("toy-schedule", ["toy", "--schedule", "bogus"], 2, "--schedule"),
    ("toy-seed-negative", ["toy", "--seed", "-1"], 2, "--seed"),
    ("toy-out-is-file", ["toy", "--out-dir", "{in}/afile"], 2, "--out-dir"),
    ("toy-out-under-file", ["toy", "--out-dir", "{in}/afile/sub"], 2, "--out-dir"),
    ("toy-out-empty", ["toy", "--out-dir", ""], 2, "--out-dir"),
    ("toy-out-file-is-folder", ["toy", "--out-dir", "{in}/blocked"], 2, "--out-dir"),
    # demo
    ("demo-preset", ["demo", "--preset", "nope"], 2, "--preset"),
    ("demo-per-class", ["demo", "--per-class", "0"], 2, "--per-class"),
    ("demo-grid-columns", ["demo", "--grid-columns", "0"], 2, "--grid-columns"),
    ("demo-sampler-steps-0", ["demo", "--sampler-steps", "0"], 2, "--sampler-steps"),
    ("demo-sampler-steps-T", ["demo", "--sampler-steps", "2000"], 2, "--sampler-steps"),
    ("demo-scale-nan", ["demo", "--guidance-scale", "nan"], 2, "--guidance-scale"),
    ("demo-steps-negative", ["demo", "--steps", "-5"], 2, "--steps"),
    ("demo-steps-without-training", ["demo", "--no-train", "--steps", "10"], 2, "--steps"),
    ("demo-seed-too-big", ["demo", "--seed", "4294967296"], 2, "--seed"),
    ("demo-out-is-file", ["demo", "--out-dir", "{in}/afile"], 2, "--out-dir"),
    # train
    ("train-preset", ["train", "--preset", "nope"], 2, "--preset"),
    ("train-steps-negative", ["train", "--steps", "-1"], 2, "--steps"),
    ("train-steps-float", ["train", "--steps", "1.5"], 2, "--steps"),
    ("train-no-processes", ["train", "--num-processes", "0", "--coordinator-address", "127.0.0.1:1234"], 2,
     "--num-processes"),
    ("train-process-id", ["train", "--num-processes", "2", "--process-id", "5", "--coordinator-address",
                          "127.0.0.1:1234"], 2, "--process-id"),
    ("train-no-address", ["train", "--num-processes", "2", "--process-id", "1"], 2, "--coordinator-address"),
    ("train-bad-address", ["train", "--coordinator-address", "nohost", "--num-processes", "2", "--process-id", "0"],
     2, "--coordinator-address"),
    ("train-cache-is-file", ["train"], 2, "DIFFUSION_JAX_CACHE"),
    # sample
    ("sample-per-class", ["sample", "--per-class", "0"], 2, "--per-class"),
    ("sample-grid-columns", ["sample", "--grid-columns", "-2"], 2, "--grid-columns"),
    ("sample-sampler", ["sample", "--sampler", "bogus"], 2, "--sampler"),
    ("sample-sampler-steps-0", ["sample", "--sampler-steps", "0"], 2, "--sampler-steps"),
    ("sample-sampler-steps-T", ["sample", "--sampler-steps", "5000"], 2, "--sampler-steps"),
    ("sample-scale-nan", ["sample", "--guidance-scale", "nan"], 2, "--guidance-scale"),
    ("sample-old-scale-inf", ["sample", "--scale", "inf"], 2, "--guidance-scale"),
    ("sample-eta-range", ["sample", "--eta", "2"], 2, "--eta"),
    ("sample-eta-heun", ["sample", "--eta", "0.5", "--sampler", "heun"], 2, "--eta"),
    ("sample-flow-ddpm", ["sample", "--preset", "mnist-unet-flow", "--sampler", "ddpm"], 2, "--sampler"),
    ("sample-source", ["sample", "--source", "bogus"], 2, "--source"),
    ("sample-out-is-file", ["sample", "--out-dir", "{in}/afile"], 2, "--out-dir"),
    ("sample-old-out-folder", ["sample", "--out", "some/dir/"], 2, "--out"),
    ("sample-out-and-out-dir", ["sample", "--out-dir", "a", "--out", "b"], 2, "--out"),
    ("sample-seed-negative", ["sample", "--seed", "-3"], 2, "--seed"),
    ("sample-nothing-trained", ["sample", "--source", "cache"], 1, "--preset mnist-unet"),
    # eval
    ("eval-missing", ["eval", "{in}/missing.npz"], 2, "SAMPLES"),
    ("eval-folder", ["eval", "{in}"], 2, "SAMPLES"),
    ("eval-npy", ["eval", "{in}/array.npy"], 2, ".npy"),
    ("eval-text-named-npz", ["eval", "{in}/text.npz"], 2, "not an .npz"),
    ("eval-pickled", ["eval", "{in}/object.npz"], 2, "unpickling"),
    ("eval-no-images", ["eval", "{in}/no_images.npz"], 2, "'images'"),
    ("eval-wrong-shape", ["eval", "{in}/cifar_shaped.npz"], 2, "(N, 28, 28, 1)"),
    ("eval-0-255-as-signed", ["eval", "{in}/float255.npz", "--value-range", "signed"], 2, "--value-range byte"),
    ("eval-nan", ["eval", "{in}/nan.npz"], 2, "NaN"),
    ("eval-one-image", ["eval", "{in}/one.npz"], 2, "at least 2"),
    ("eval-label-range", ["eval", "{in}/bad_labels.npz"], 2, "labels must lie in [0, 9]"),
    ("eval-label-count", ["eval", "{in}/short_labels.npz"], 2, "labels must have one entry per image"),
    ("eval-dataset", ["eval", "{in}/one.npz", "--dataset", "nope"], 2, "--dataset"),
    ("eval-value-range", ["eval", "{in}/one.npz", "--value-range", "percent"], 2, "--value-range"),
    # data
    ("data-dataset", ["data", "--dataset", "nope"], 2, "--dataset"),
]


def _make_inputs(folder: pathlib.Path) -> None:
    folder.mkdir()
    (folder / "afile").write_text("a file, not a folder\n")
    (folder / "blocked" / "stats.json").mkdir(parents=True)  # a folder where an output file goes
    (folder / "text.npz").write_text("not a zip archive\n")
    np.save(folder / "array.npy", np.zeros((3, 28, 28, 1), np.float32))
    rng = np.random.default_rng(0)
    signed = rng.uniform(-1, 1, (4, 28, 28, 1)).astype(np.float32)
    np.savez(folder / "object.npz", images=np.array([1, "a", None], dtype=object))
    np.savez(folder / "no_images.npz", x=np.zeros(3))
    np.savez(folder / "cifar_shaped.npz", images=rng.uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32))
    np.savez(folder / "float255.npz", images=(signed + 1) * 127.5)
    np.savez(folder / "nan.npz", images=np.where(signed > 0.9, np.nan, signed))
    np.savez(folder / "one.npz", images=signed[:1])
    np.savez(folder / "bad_labels.npz", images=signed, labels=np.array([0, 1, 2, 12]))
    np.savez(folder / "short_labels.npz", images=signed, labels=np.array([0, 1, 2]))


def _snapshot(folder: pathlib.Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def _run(case, inputs: pathlib.Path, work: pathlib.Path):
    name, argv, _, _ = case
    cwd = work / name
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in (cli.DEBUG_ENV, "DIFFUSION_JAX_FAST", "CI")}
    env.update(DIFFUSION_JAX_CACHE=str(cwd / "cache"), DIFFUSION_JAX_PRETRAINED=str(cwd / "no-shipped-weights"),
               MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    if name == "train-cache-is-file":
        env["DIFFUSION_JAX_CACHE"] = str(inputs / "afile")
    if argv[:1] != ["demo"]:  # (importing demo makes its evaluation key on a device)
        # No device exists under this name: a check that touched JAX's backend would fail
        # with a RuntimeError instead of the expected message, so this proves "before any work".
        env["JAX_PLATFORMS"] = "no-device-during-checks"
    args = [a.replace("{in}", str(inputs)) for a in argv]
    res = subprocess.run([sys.executable, "-m", "diffusion_jax", *args], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=300)
    left = sorted(str(p.relative_to(cwd)) for p in cwd.rglob("*"))
    return res, left


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Every case, run a few at a time (each is one short process)."""
    root = tmp_path_factory.mktemp("cli_errors")
    inputs, work = root / "inputs", root / "work"
    _make_inputs(inputs)
    work.mkdir()
    before = _snapshot(inputs)
    workers = max(2, min(4, (os.cpu_count() or 2) + 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = {c[0]: pool.submit(_run, c, inputs, work) for c in CASES}
        out = {name: f.result() for name, f in futures.items()}
    assert _snapshot(inputs) == before, "a bad invocation changed an input file"
    return out


def test_the_table_is_big_enough():
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_invocation(case, results):
    name, argv, status, needle = case
    res, left = results[name]
    err = res.stderr.strip()
    assert res.returncode == status, f"{argv}: status {res.returncode}, stderr {err!r}"
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, f"{argv}: stderr is not one line: {err!r}"
    assert err.startswith("diffusion-jax"), err
    assert needle in err, f"{argv}: {err!r} does not name {needle!r}"
    assert left == [], f"{argv} left {left} behind"
    assert res.stdout == "", res.stdout


def test_an_unwritable_out_dir_is_refused_before_work(tmp_path):
    """Root may write anywhere, so use a read-only file system when running as root."""
    if os.geteuid() == 0:
        target = pathlib.Path("/sys/diffusion-jax-out")
        if not pathlib.Path("/sys").is_dir() or os.access("/sys", os.W_OK) and _can_write("/sys"):
            pytest.skip("no read-only folder to try as root")
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        target = locked / "out"
    res = subprocess.run([sys.executable, "-m", "diffusion_jax", "toy", "--out-dir", str(target)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "--out-dir" in res.stderr and "cannot write" in res.stderr
    assert not target.exists()


def _can_write(folder) -> bool:
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def test_debug_shows_the_traceback(tmp_path):
    env = dict(os.environ, **{cli.DEBUG_ENV: "1"})
    res = subprocess.run([sys.executable, "-m", "diffusion_jax", "toy", "--num-samples", "0"], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path, env=env)
    assert res.returncode == 2
    assert "Traceback" in res.stderr and res.stderr.strip().splitlines()[-1].endswith("--num-samples must be >= 1, got 0")


# ------------------------------------------------------------------------- in-process checks


def test_eval_converts_0_255_floats_with_a_note(tmp_path, monkeypatch, capsys):
    """`eval` on float images in [0, 255] scores them as pixels mapped to [-1, 1], and says so."""
    from diffusion_jax import metrics

    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (6, 28, 28, 1)).astype(np.float32)
    np.savez(tmp_path / "s.npz", images=pixels, labels=np.arange(6))
    seen = {}
    monkeypatch.setattr(metrics, "score", lambda key, images, labels, dataset, **kw: seen.update(
        images=images, labels=labels, kw=kw) or {"fid": 1.0})
    assert cli.main(["eval", str(tmp_path / "s.npz")]) == 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "byte" in err and "--value-range" in err
    np.testing.assert_allclose(seen["images"], pixels / 127.5 - 1.0, atol=1e-6)
    assert seen["kw"]["value_range"] == "signed" and list(seen["labels"]) == list(range(6))
    # the same file scored as [-1, 1] on request is refused, not scored
    assert cli.main(["eval", str(tmp_path / "s.npz"), "--value-range", "signed"]) == 2


def test_eval_signed_images_get_no_note(tmp_path, monkeypatch, capsys):
    from diffusion_jax import metrics

    images = np.random.default_rng(2).uniform(-1, 1, (4, 28, 28, 1)).astype(np.float32)
    np.savez(tmp_path / "s.npz", images=images)
    seen = {}
    monkeypatch.setattr(metrics, "score", lambda key, im, labels, dataset, **kw: seen.update(im=im) or {"fid": 1.0})
    assert cli.main(["eval", str(tmp_path / "s.npz")]) == 0
    assert capsys.readouterr().err == ""
    np.testing.assert_array_equal(seen["im"], images)


def test_staged_writes_leave_nothing_when_writing_fails(tmp_path):
    """sample's two files appear together or not at all: a failure midway removes the partial one."""
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        with models.staged(out) as tmp:
            (tmp / "samples.npz").write_bytes(b"half of an archive")
            raise OSError("disk full")
    assert sorted(p.name for p in out.iterdir()) == []
    with models.staged(out) as tmp:
        (tmp / "samples.npz").write_bytes(b"1")
        (tmp / "samples.png").write_bytes(b"2")
    assert sorted(p.name for p in out.iterdir()) == ["samples.npz", "samples.png"]


def test_train_says_where_the_weights_came_from(tmp_path, monkeypatch, capsys):
    """Shipped weights are reported as loaded, not as trained; a finished cached run as cached."""
    from diffusion_jax import pipeline, pretrained

    monkeypatch.setenv("DIFFUSION_JAX_CACHE", str(tmp_path))

    class State:
        def __init__(self, opt_state):
            self.opt_state, self.step = opt_state, 1200

    monkeypatch.setattr(pretrained, "find", lambda name, root=None: {"file": f"{name}.npz"})
    monkeypatch.setattr(pipeline, "train", lambda preset, retrain=False, progress=True: State(None))
    assert cli.main(["train"]) == 0
    out = capsys.readouterr().out
    assert "loaded the shipped weights" in out and "trained " not in out.replace("nothing was trained", "")
    monkeypatch.setattr(pipeline, "train", lambda preset, retrain=False, progress=True: State({}))
    monkeypatch.setattr(models, "finished_in_cache", lambda preset: True)
    assert cli.main(["train", "--retrain"]) == 0
    assert "already trained here" in capsys.readouterr().out
    monkeypatch.setattr(models, "finished_in_cache", lambda preset: False)
    assert cli.main(["train", "--steps", "3"]) == 0
    assert capsys.readouterr().out.startswith("trained mnist-unet (3 steps")
