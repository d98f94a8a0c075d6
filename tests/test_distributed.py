"""Multi-process training on JAX's distributed runtime, on localhost (CPU, gloo).

Pinned: the cluster settings resolve from flags or environment with one-line errors;
two processes with one CPU device each train a tiny DiT to the same parameters as
one process with two devices, including a stop at step 3 and a restart of both
processes from the checkpoint (only process 0 writes the log and checkpoints); the CLI
flags reach ``jax.distributed.initialize``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diffusion_jax import checkpoint as ckpt
from diffusion_jax import cli, distributed

TESTS = Path(__file__).parent
TIMEOUT_S = 180  # per phase; a healthy phase takes well under a minute

CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
mode, out, steps, where = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
from diffusion_jax import distributed
if mode == "proc":  # before anything touches a device
    pid, port = int(sys.argv[6]), sys.argv[7]
    assert distributed.initialize(f"127.0.0.1:{port}", 2, pid, timeout_s=120)
import jax
from flax import nnx
import test_train as T
from diffusion_jax import train
from diffusion_jax.models import DiT, DiTConfig
net = DiTConfig(patch_size=4, hidden=16, depth=1, num_heads=2, num_classes=T.NUM_CLASSES, input_size=8)  # 8x8x1
cfg = train.TrainConfig(batch_size=8, lr=1e-2, warmup_steps=2, steps=steps, log_every=2, checkpoint_every=2,
                        keep_checkpoints=10, cond_dropout=0.5, seed=3, ema_warmup=10)
images, labels = T.dataset(24)  # 3 batches per epoch: 6 steps cross an epoch boundary
batch_fn = train.epoch_batch_fn(jax.random.PRNGKey(0), images, labels, 8)
state = train.fit(DiT(net, rngs=nnx.Rngs(0)), cfg, T.SCHED, batch_fn, out_dir=out, null_label=T.NULL,
                  progress=False, steps_per_dispatch=4 if where == "device" else 1)
leaf = jax.tree.leaves(state.params)[0]
print(json.dumps({"processes": jax.process_count(), "devices": jax.device_count(),
                  "local_devices": jax.local_device_count(), "mesh_devices": len(leaf.sharding.device_set),
                  "step": int(distributed.host_value(state.step))}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(devices: int) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in (distributed.ENV_ADDRESS, distributed.ENV_COUNT, distributed.ENV_ID)}
    env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    return env


def run_together(commands: list[list[str]], devices: int) -> list[dict]:
    """Start every command at once (a cluster waits for all its members), wait with a
    timeout, and kill what is left on any failure. Returns each one's last JSON line."""
    procs = [subprocess.Popen(c, env=child_env(devices), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in commands]
    try:
        outs = [p.communicate(timeout=TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]


def cluster(out: Path, steps: int, where: str) -> list[dict]:
    port = str(free_port())
    return run_together([[sys.executable, "-c", CHILD, str(TESTS), "proc", str(out), str(steps), where, str(i), port]
                         for i in range(2)], devices=1)


def final_arrays(run_dir: Path, step: int) -> tuple[list, list]:
    path = run_dir / "checkpoints" / f"step_{step:08d}"
    meta = ckpt.read_metadata(path)
    with np.load(path / "arrays.npz") as f:
        return [e["name"] for e in meta["leaves"]], [f[f"a{i}"] for i in range(len(meta["leaves"]))]


def test_two_processes_match_one_process_with_two_devices_and_resume(tmp_path):
    # uninterrupted reference: one process, two devices, host-built batches (the classic loop)
    [ref] = run_together([[sys.executable, "-c", CHILD, str(TESTS), "single", str(tmp_path / "ref"), "6", "host"]],
                         devices=2)
    assert ref == {"processes": 1, "devices": 2, "local_devices": 2, "mesh_devices": 2, "step": 6}
    # two processes: stop at step 3 (host batches, each process sends its rows) ...
    first = cluster(tmp_path / "mp", 3, "host")
    assert [r["processes"] for r in first] == [2, 2] and [r["mesh_devices"] for r in first] == [2, 2]
    assert [r["local_devices"] for r in first] == [1, 1] and [r["step"] for r in first] == [3, 3]
    # ... then restart both from the checkpoint at 3: data on the devices, up to 4 steps per call
    second = cluster(tmp_path / "mp", 6, "device")
    assert [r["step"] for r in second] == [6, 6]

    names_ref, ref_arrays = final_arrays(tmp_path / "ref", 6)
    names_mp, mp_arrays = final_arrays(tmp_path / "mp", 6)
    assert names_mp == names_ref
    for name, a, b in zip(names_ref, mp_arrays, ref_arrays):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)
    _, at3 = final_arrays(tmp_path / "mp", 3)
    assert not all(np.allclose(a, b) for a, b in zip(at3, ref_arrays))  # the comparison can fail
    # only process 0 wrote: one log record per log step, none doubled by process 1
    steps = [json.loads(line)["step"] for line in (tmp_path / "mp" / "log.jsonl").read_text().splitlines()]
    assert steps == [2, 3, 4, 6]
    ref_log = [json.loads(line) for line in (tmp_path / "ref" / "log.jsonl").read_text().splitlines()]
    mp_log = [json.loads(line) for line in (tmp_path / "mp" / "log.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(mp_log[-1]["loss"], ref_log[-1]["loss"], rtol=1e-5)  # steps 5-6 alike


# ---------------------------------------------------------------- settings from flags or environment

def test_cluster_spec_from_flags_or_environment(monkeypatch):
    assert distributed.cluster_spec(environ={}) is None  # nothing asked: one process
    assert distributed.cluster_spec(num_processes=1, environ={}) is None
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:777", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    assert distributed.cluster_spec(environ=env) == distributed.ClusterSpec("10.0.0.1:777", 4, 3)
    # flags win over the environment, one field at a time
    assert distributed.cluster_spec("h:1", None, 0, environ=env) == distributed.ClusterSpec("h:1", 4, 0)
    for var in (distributed.ENV_ADDRESS, distributed.ENV_COUNT, distributed.ENV_ID):
        monkeypatch.delenv(var, raising=False)
    assert distributed.initialize() is False  # nothing asked: no cluster joined, jax untouched


@pytest.mark.parametrize("kw, message", [
    ({"num_processes": 2, "process_id": 0}, r"--coordinator-address \(or JAX_COORDINATOR_ADDRESS\) is needed"),
    ({"coordinator_address": "h:1", "num_processes": 2, "process_id": 2}, r"--process-id .* must lie in \[0, 1\]"),
    ({"coordinator_address": "h:1", "process_id": 0}, r"--num-processes .* must be a positive process count"),
    ({"coordinator_address": "h:1", "num_processes": "two", "process_id": 0}, r"--num-processes .* must be an integer"),
    ({"coordinator_address": "nohost", "num_processes": 2, "process_id": 0}, r"must look like host:port"),
    ({"coordinator_address": "h:99999", "num_processes": 2, "process_id": 0}, r"must look like host:port"),
])
def test_bad_cluster_settings_raise_one_line(kw, message):
    with pytest.raises(ValueError, match=message) as err:
        distributed.cluster_spec(**kw, environ={})
    assert "\n" not in str(err.value)


def test_cli_train_reports_bad_cluster_flags_before_any_work(capsys):
    status = cli.main(["train", "--num-processes", "2", "--process-id", "5", "--coordinator-address", "127.0.0.1:9"])
    assert status == 2
    assert "--process-id (or JAX_PROCESS_ID) must lie in [0, 1]" in capsys.readouterr().err


CLI_CHILD = r"""
import os, sys
os.environ["DIFFUSION_JAX_CACHE"] = sys.argv[1]  # an empty checkpoint cache
from diffusion_jax import cli
sys.exit(cli.main(["train", "--preset", "mnist-dit", "--steps", "2", "--coordinator-address",
                   "127.0.0.1:" + sys.argv[2], "--num-processes", "2", "--process-id", sys.argv[3]]))
"""


@pytest.mark.slow
def test_cli_train_runs_as_two_processes(tmp_path):
    port = str(free_port())
    procs = [subprocess.Popen([sys.executable, "-c", CLI_CHILD, str(tmp_path), port, str(i)], env=child_env(1),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        outs = [p.communicate(timeout=TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert "trained mnist-dit (2 steps, 2 processes)" in outs[0][0]
    assert "trained" not in outs[1][0]  # process 0 reports, process 1 stays quiet
    [run] = list((tmp_path / "checkpoints").glob("mnist-dit-*"))
    assert [p.name for p in ckpt.list_checkpoints(run / "checkpoints")] == ["step_00000002"]
    assert len((run / "log.jsonl").read_text().splitlines()) == 1
