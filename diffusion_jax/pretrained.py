"""The shipped reference weights under ``data/pretrained/``: a manifest, checksums, fingerprints.

Every artifact is one ``.npz`` of inference weights (EMA weights for generators; no
optimizer state), leaves named by their key path, never pickled, plus one entry in
``data/pretrained/manifest.json``::

    "mnist-unet": {
      "kind": "generator",            # generator | vae | classifier
      "file": "mnist-unet.npz", "sha256": "...", "bytes": 2240000, "dtype": "float32",
      "fingerprint": "1af6aa0ded0c",  # the preset / VAE / classifier config it was trained for
      "leaves": "...",                # digest of every leaf's path, shape and dtype
      "probe": {...},                 # the network's output on a fixed input (see tests)
      "command": "...", "steps": 1200, "images_seen": 153600, "wall_s": 470, "machine": "...",
      "scores": {...}                 # measured with the reference classifiers
    }

Loading (:func:`load`) checks, in this order, and fails with one line naming the file:
the entry exists, the file's SHA-256 matches, the fingerprint asked for is the one it was
trained for, and every leaf's path, shape and dtype match the model it is loaded into.
A changed architecture therefore never loads old weights. Callers (the pipeline, the
reference classifiers, the VAE codec) decide whether to fall back to training.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import jax
import numpy as np

from diffusion_jax import paths
from diffusion_jax.checkpoint import atomic_savez

__all__ = ["DIR", "MANIFEST", "FORMAT", "KINDS", "DTYPES", "PretrainedError", "directory", "manifest", "find",
           "leaf_names", "leaves_digest", "file_sha256", "load", "save", "update", "total_bytes"]

DIR = paths.REPO_ROOT / "data" / "pretrained"
MANIFEST = "manifest.json"
FORMAT = 1
KINDS = ("generator", "vae", "classifier")
#: Stored dtypes. float16 halves a file; the weights are widened to float32 on load.
DTYPES = ("float32", "float16")


class PretrainedError(ValueError):
    """A shipped artifact is missing, corrupt, or was made for another configuration."""


def directory() -> Path:
    """Where the artifacts live (``$DIFFUSION_JAX_PRETRAINED`` overrides, for tests)."""
    env = os.environ.get("DIFFUSION_JAX_PRETRAINED")
    return Path(env) if env else DIR


def manifest(root: Path | None = None) -> dict:
    """The manifest's ``artifacts`` dict (empty when there is no manifest)."""
    path = (root or directory()) / MANIFEST
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PretrainedError(f"{path} is not valid JSON ({err})") from None
    if doc.get("format") != FORMAT or not isinstance(doc.get("artifacts"), dict):
        raise PretrainedError(f"{path}: expected {{'format': {FORMAT}, 'artifacts': {{...}}}}")
    return doc["artifacts"]


def find(name: str, root: Path | None = None) -> dict | None:
    """The manifest entry called ``name``, or None."""
    return manifest(root).get(name)


def leaf_names(tree) -> list[str]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [jax.tree_util.keystr(p, simple=True, separator="/") for p, _ in flat]


def leaves_digest(tree) -> str:
    """SHA-256 (16 hex digits) of every leaf's path, shape and dtype: the architecture's shape."""
    h = hashlib.sha256()
    for name, leaf in zip(leaf_names(tree), jax.tree_util.tree_leaves(tree)):
        h.update(f"{name}|{tuple(np.shape(leaf))}|{np.dtype(leaf.dtype)}\n".encode())
    return h.hexdigest()[:16]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load(name: str, template, *, fingerprint: str | None = None, root: Path | None = None):
    """The weights of artifact ``name`` as a pytree shaped like ``template`` (possibly abstract).

    Raises :class:`PretrainedError` (one line) if the entry or file is missing, the
    checksum differs, ``fingerprint`` is given and differs from the entry's, or any leaf
    does not match the template.
    """
    root = root or directory()
    entry = find(name, root)
    if entry is None:
        raise PretrainedError(f"no shipped weights called {name!r} in {root / MANIFEST}")
    path = root / entry["file"]
    if fingerprint is not None and entry.get("fingerprint") != fingerprint:
        raise PretrainedError(f"{path.name} was trained for configuration {entry.get('fingerprint')}, "
                              f"not {fingerprint}: the preset changed since it was made (run `make pretrained`)")
    if not path.is_file():
        raise PretrainedError(f"{path} is missing (listed in {MANIFEST}); restore it with git or run `make pretrained`")
    if file_sha256(path) != entry.get("sha256"):
        raise PretrainedError(f"{path} is corrupt: its SHA-256 does not match {MANIFEST}")
    want = leaf_names(template)
    try:
        with np.load(path, allow_pickle=False) as f:
            stored = {k: f[k] for k in f.files if k != "__meta__"}
    except (OSError, ValueError) as err:
        raise PretrainedError(f"{path} is unreadable ({err})") from None
    if set(stored) != set(want):
        missing, extra = sorted(set(want) - set(stored)), sorted(set(stored) - set(want))
        raise PretrainedError(f"{path.name} does not fit the model: missing {missing[:3]}, unexpected "
                              f"{extra[:3]} (the architecture changed; run `make pretrained`)")
    out = []
    for n, leaf in zip(want, jax.tree_util.tree_leaves(template)):
        a = stored[n]
        if a.shape != tuple(leaf.shape):
            raise PretrainedError(f"{path.name}: {n} has shape {a.shape}, the model expects {tuple(leaf.shape)}")
        out.append(np.asarray(a, dtype=leaf.dtype))
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(template), out)


def save(name: str, params, *, kind: str, fingerprint: str, dtype: str = "float32",
         root: Path | None = None, **info) -> dict:
    """Write ``params`` as artifact ``name`` and record it in the manifest; returns the entry.

    ``info`` (JSON-able) is stored in the entry: command, steps, images_seen, wall_s,
    machine, scores, probe, and anything a loader needs (e.g. a VAE's latent scale).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    root = root or directory()
    root.mkdir(parents=True, exist_ok=True)
    names = leaf_names(params)
    arrays = {n: np.asarray(jax.device_get(v), dtype=dtype) for n, v in zip(names, jax.tree_util.tree_leaves(params))}
    file = f"{name}.npz"
    atomic_savez(root / file, __meta__=np.array(json.dumps({"name": name, "fingerprint": fingerprint})), **arrays)
    entry = {"kind": kind, "file": file, "sha256": file_sha256(root / file), "bytes": (root / file).stat().st_size,
             "dtype": dtype, "fingerprint": fingerprint, "leaves": leaves_digest(params), **info}
    update(name, entry, root)
    return entry


def update(name: str, entry: dict | None, root: Path | None = None) -> None:
    """Set (or with None, remove) one manifest entry, atomically."""
    root = root or directory()
    path = root / MANIFEST
    doc = {"format": FORMAT, "artifacts": manifest(root)}
    if entry is None:
        doc["artifacts"].pop(name, None)
    else:
        doc["artifacts"][name] = entry
    doc["artifacts"] = dict(sorted(doc["artifacts"].items()))
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".manifest.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False, default=str)
        f.write("\n")
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the manifest from other users
    os.replace(tmp, path)


def total_bytes(root: Path | None = None) -> int:
    return sum(int(e.get("bytes", 0)) for e in manifest(root).values())
