"""Atomic, pickle-free checkpoints of a training state (any pytree of arrays).

Layout: ``<dir>/step_00000100/{arrays.npz, meta.json}``. ``arrays.npz`` holds the
pytree's leaves as ``a0, a1, ...``; ``meta.json`` holds their key paths, shapes and
dtypes, the step, the caller's metadata (e.g. the config) and the SHA-256 of the npz.

Atomicity: a checkpoint is written into a hidden temporary directory next to the
target, every file and the directory are fsync'ed, and only then is the directory
renamed into place (``os.replace``, atomic on POSIX). A crash at any point leaves either
no new checkpoint or a complete one; earlier checkpoints are never touched until the
new one is committed. The newest ``keep`` checkpoints are kept.

Why ``.npz`` and not orbax-checkpoint: orbax 0.12 works offline here, but it is not a
declared dependency, saves asynchronously with background threads and a multi-file
OCDBT layout, and its API has changed across versions (v0/v1). Our states are small and
replicated, so one host can write them; a flat npz plus JSON is simple, easy to inspect,
never unpickles (``allow_pickle=False``) and its commit point is one rename we control.
Multi-host: call :func:`save_checkpoint` on every process; only process 0 writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import jax
import numpy as np

__all__ = ["FORMAT", "CheckpointMismatchError", "atomic_savez", "list_checkpoints", "latest_checkpoint",
           "save_checkpoint", "read_metadata", "restore_checkpoint"]

FORMAT = 1
_NAME = re.compile(r"^step_(\d{8,})$")


class CheckpointMismatchError(ValueError):
    """The stored pytree does not match the target's structure, shapes or dtypes."""


def _leaves(tree):
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return [jax.tree_util.keystr(path) for path, _ in flat], [x for _, x in flat], treedef


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _spec(x) -> tuple[tuple[int, ...], str]:
    """Shape and dtype of a leaf as stored on the host (a PRNG key as its raw key data)."""
    if _is_key(x):
        x = jax.random.key_data(x)
    return tuple(np.shape(x)), str(np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype)


def _to_host(x) -> np.ndarray:
    if _is_key(x):
        x = jax.random.key_data(x)
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        if not x.is_fully_replicated:
            raise ValueError("save_checkpoint only writes replicated or single-host arrays")
        x = x.addressable_data(0)  # every process holds the full value
    return np.asarray(jax.device_get(x))


def _fsync_dir(path: Path) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_savez(path, **arrays) -> None:
    """``np.savez`` to ``path`` atomically: a temp file beside it, fsync, then one rename.

    A crash leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the cache from other users
        os.replace(tmp, path)  # the commit point
        _fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def list_checkpoints(directory) -> list[Path]:
    """Complete checkpoints in ``directory``, oldest first (by step)."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir()
             if (m := _NAME.match(p.name)) and (p / "meta.json").is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory) -> Path | None:
    """The newest complete checkpoint in ``directory``, or ``None``."""
    ckpts = list_checkpoints(directory)
    return ckpts[-1] if ckpts else None


def save_checkpoint(directory, state, metadata: dict | None = None, *, keep: int = 3) -> Path:
    """Write ``state`` atomically to ``directory/step_XXXXXXXX`` and keep the last ``keep``.

    ``state.step`` (or ``metadata["step"]``) names the checkpoint; ``metadata`` must be
    JSON-serialisable. Returns the checkpoint's path.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    metadata = dict(metadata or {})
    step = int(metadata.get("step", getattr(state, "step", 0)))
    names, leaves, _ = _leaves(state)
    arrays = [_to_host(x) for x in leaves]  # every process joins any transfers
    directory = Path(directory)
    final = directory / f"step_{step:08d}"
    if jax.process_index() != 0:
        return final
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(".tmp-step_*"):  # left by a crash mid-write; single writer
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=directory))
    old = None
    try:
        npz = tmp / "arrays.npz"
        with open(npz, "wb") as f:
            np.savez(f, **{f"a{i}": a for i, a in enumerate(arrays)})
            f.flush()
            os.fsync(f.fileno())
        digest = hashlib.sha256(npz.read_bytes()).hexdigest()
        meta = {**metadata, "step": step, "format": FORMAT, "sha256": digest,
                "leaves": [{"name": n, "shape": list(a.shape), "dtype": str(a.dtype), "key": _is_key(x)}
                           for n, a, x in zip(names, arrays, leaves)]}
        _write(tmp / "meta.json", json.dumps(meta, indent=1, default=str).encode())
        _fsync_dir(tmp)
        if final.exists():  # re-saving a step: move the old copy aside, then swap
            old = directory / f".tmp-{final.name}-old"
            os.replace(final, old)
        os.replace(tmp, final)  # the commit point
        _fsync_dir(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not final.exists():
            old.rename(final)  # put the earlier copy of this step back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    for stale in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def _resolve(path) -> Path:
    p = Path(path)
    if (p / "meta.json").is_file():
        return p
    latest = latest_checkpoint(p)
    if latest is None:
        raise FileNotFoundError(f"no checkpoint found at {p} (expected step_XXXXXXXX/meta.json)")
    return latest


def read_metadata(path) -> dict:
    """The ``meta.json`` of a checkpoint (or of the newest one in a directory)."""
    return json.loads((_resolve(path) / "meta.json").read_text())


def restore_checkpoint(path, target):
    """Load a checkpoint (a ``step_*`` directory, or the newest in a directory) into ``target``.

    ``target`` supplies the pytree structure (and static fields such as a graphdef),
    leaf shapes, dtypes and shardings; the stored values must match it leaf for leaf,
    otherwise :class:`CheckpointMismatchError` lists the differences.
    """
    path = _resolve(path)
    meta = read_metadata(path)
    npz_path = path / "arrays.npz"
    if hashlib.sha256(npz_path.read_bytes()).hexdigest() != meta.get("sha256"):
        raise ValueError(f"checkpoint {path} is corrupt: arrays.npz does not match its SHA-256")
    names, leaves, treedef = _leaves(target)
    stored = {e["name"]: (i, e) for i, e in enumerate(meta["leaves"])}
    problems = [f"missing in checkpoint: {n}" for n in names if n not in stored]
    problems += [f"not in target: {n}" for n in stored if n not in set(names)]
    for n, x in zip(names, leaves):
        if n in stored:
            e = stored[n][1]
            want, got = _spec(x), (tuple(e["shape"]), e["dtype"])
            if want != got:
                problems.append(f"{n}: checkpoint has shape {got[0]} dtype {got[1]}, "
                                f"target has shape {want[0]} dtype {want[1]}")
    if problems:
        shown = "\n  ".join(problems[:10]) + ("\n  ..." if len(problems) > 10 else "")
        raise CheckpointMismatchError(
            f"checkpoint {path} does not match the target state ({len(problems)} problem(s)); "
            f"was it saved from a different model or config?\n  {shown}")
    out = []
    with np.load(npz_path, allow_pickle=False) as data:
        for n, x in zip(names, leaves):
            a = data[f"a{stored[n][0]}"]
            if a.dtype.kind == "V":  # npz stores ml_dtypes (bfloat16, ...) as raw bytes
                a = a.view(np.dtype(stored[n][1]["dtype"]))
            if _is_key(x):
                out.append(jax.device_put(jax.random.wrap_key_data(a, impl=jax.random.key_impl(x)), x.sharding))
            elif isinstance(x, jax.Array):
                out.append(jax.make_array_from_callback(a.shape, x.sharding, lambda idx, a=a: a[idx]))
            else:
                out.append(a)
    return jax.tree_util.tree_unflatten(treedef, out)
