"""Frozen-config helpers: a stable digest of "everything that changes the weights".

A preset's fingerprint names its trained weights: the checkpoint cache directory and the
shipped-weights manifest are keyed by it. Two rules keep it honest and stable:

* every field that changes training is included, recursively through nested frozen
  dataclasses (model, training, VAE configs), with the class name of each;
* fields marked ``dataclasses.field(metadata={"fingerprint": False})`` (logging and
  checkpoint intervals: how a run is watched, not what it computes) are omitted;
* a field left at its class default is omitted. Adding a new option whose default keeps
  the old behaviour therefore leaves every existing fingerprint, and every shipped weight
  file, valid; setting it to anything else changes the fingerprint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

__all__ = ["essential", "digest"]

_MISSING = dataclasses.MISSING


def _default(field: dataclasses.Field):
    if field.default is not _MISSING:
        return field.default
    if field.default_factory is not _MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return _MISSING


def essential(value: Any) -> Any:
    """JSON-able form of ``value`` with default-valued dataclass fields dropped."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {"__class__": type(value).__name__}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if not f.metadata.get("fingerprint", True) or v == _default(f):
                continue
            out[f.name] = essential(v)
        return out
    if isinstance(value, (list, tuple)):
        return [essential(v) for v in value]
    if isinstance(value, dict):
        return {str(k): essential(v) for k, v in sorted(value.items())}
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 1e-3 and 0.001 are one value; 5.0 and 5 hash alike
    return value


def digest(value: Any, length: int = 12) -> str:
    """The first ``length`` hex digits of SHA-256 over :func:`essential` ``(value)``."""
    blob = json.dumps(essential(value), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]
