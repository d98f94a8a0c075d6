"""Data parallelism on one mesh, from one process or several (JAX's distributed runtime).

* :func:`initialize` joins this process to a cluster (``jax.distributed.initialize``)
  when a coordinator address / process count / process id is given, by argument or by
  environment. Call it at the program's edge, before anything touches a JAX device.
* :func:`make_mesh` is a 1-D ``"data"`` mesh over every device of every process. The
  state is replicated (:func:`replicate`), the batch split along ``"data"``.
* :func:`global_batch` builds the global batch from a host array every process holds
  in full: each process hands over only the rows of its own devices. :func:`shard_batch`
  is the variant where each process passes just its own slice.

On one machine the processes need CPU collectives, which JAX provides through gloo;
:func:`initialize` selects it unless ``JAX_CPU_COLLECTIVES_IMPLEMENTATION`` says otherwise.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

# JAX itself reads JAX_COORDINATOR_ADDRESS; the other two follow its naming (JAX auto-detects
# them only on Slurm, Open MPI, Kubernetes and TPU pods).
ENV_ADDRESS, ENV_COUNT, ENV_ID = "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    coordinator_address: str  # "host:port" of process 0's coordinator service
    num_processes: int
    process_id: int


def cluster_spec(coordinator_address=None, num_processes=None, process_id=None,
                 environ=None) -> ClusterSpec | None:
    """The cluster asked for by the arguments, else by ``environ`` (default ``os.environ``).

    ``None`` means one process (nothing asked for, or a count of 1 without an address).
    Bad values raise a one-line ``ValueError`` naming the flag and its variable.
    """
    env = os.environ if environ is None else environ
    address = coordinator_address or env.get(ENV_ADDRESS) or None
    count = _as_int(num_processes, env.get(ENV_COUNT), "--num-processes", ENV_COUNT)
    pid = _as_int(process_id, env.get(ENV_ID), "--process-id", ENV_ID)
    if address is None and count in (None, 1) and pid in (None, 0):
        return None
    if count is None or count < 1:
        raise ValueError(f"--num-processes (or {ENV_COUNT}) must be a positive process count, got {count}")
    if pid is None or not 0 <= pid < count:
        raise ValueError(f"--process-id (or {ENV_ID}) must lie in [0, {count - 1}] for "
                         f"{count} processes, got {pid}")
    if address is None:
        raise ValueError(f"--coordinator-address (or {ENV_ADDRESS}) is needed with {count} "
                         "processes: host:port of process 0, e.g. 127.0.0.1:12345")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--coordinator-address (or {ENV_ADDRESS}) must look like host:port, got {address!r}")
    return ClusterSpec(address, count, pid)


def _as_int(value, env_value, flag, var):
    raw = value if value is not None else env_value
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{flag} (or {var}) must be an integer, got {raw!r}") from None


def initialize(coordinator_address=None, num_processes=None, process_id=None, *,
               timeout_s: int = 300) -> bool:
    """Join a multi-process JAX cluster if one is asked for; True if this process did.

    Arguments win over ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` /
    ``JAX_PROCESS_ID``. Every process must call it, with the same address and count and
    its own id, before touching a device; afterwards ``jax.devices()`` lists all
    processes' devices. ``timeout_s`` bounds the wait for the other processes.
    """
    spec = cluster_spec(coordinator_address, num_processes, process_id)
    if spec is None:
        return False
    if "JAX_CPU_COLLECTIVES_IMPLEMENTATION" not in os.environ:  # CPU processes talk over gloo
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=spec.coordinator_address,
                               num_processes=spec.num_processes, process_id=spec.process_id,
                               initialization_timeout=int(timeout_s))
    return True


def is_main_process() -> bool:
    """Process 0 writes logs and checkpoints; the others only compute."""
    return jax.process_index() == 0


def make_mesh(devices=None) -> jax.sharding.Mesh:
    """A 1-D ``"data"`` mesh over ``devices`` (default: all, of every process), with Auto axes.

    jax >= 0.7 defaults ``make_mesh`` to Explicit axes, under which a program jitted on
    parameters moved back to one device fails; Auto keeps plain ``jit`` semantics.
    """
    devices = list(jax.devices() if devices is None else devices)
    kw = {"devices": devices}
    if hasattr(jax.sharding, "AxisType"):
        kw["axis_types"] = (jax.sharding.AxisType.Auto,)
    return jax.make_mesh((len(devices),), ("data",), **kw)


def _check_split(mesh, rows: int, devices: int) -> None:
    if rows % devices:
        raise ValueError(f"batch of {rows} does not split over {devices} devices; "
                         f"use a batch size divisible by {devices}")


def shard_batch(mesh, images, labels=None):
    """Put a batch on ``mesh``, split along its first axis over ``"data"``.

    One process: ``images`` is the global batch. Several (after :func:`initialize`):
    each passes its own slice and the global batch is their concatenation.
    """
    sharding = NamedSharding(mesh, P("data"))
    _check_split(mesh, images.shape[0], len(sharding.addressable_devices))
    put = (lambda a: jax.device_put(a, sharding)) if jax.process_count() == 1 else (
        lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)))
    return put(images), None if labels is None else put(labels)


def global_batch(mesh, images, labels=None):
    """Like :func:`shard_batch`, but every process passes the same GLOBAL batch.

    Each process transfers only the rows its own devices hold, so the batch of step
    ``s`` can stay a pure function of ``s`` however many processes there are.
    """
    sharding = NamedSharding(mesh, P("data"))
    _check_split(mesh, images.shape[0], mesh.size)

    def put(a):
        if jax.process_count() == 1:
            return jax.device_put(a, sharding)
        a = np.asarray(a)
        return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx])

    return put(images), None if labels is None else put(labels)


def replicate(mesh, tree):
    """Copy a pytree (e.g. the TrainState, or a data set) to every device of ``mesh``.

    With several processes each must pass the same values: each fills its own devices
    from its own copy (nothing checks that the copies agree; a restored checkpoint or
    the same seed makes them so).
    """
    sharding = NamedSharding(mesh, P())
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda x: _replicated(x, sharding), tree)


def _replicated(x, sharding):
    if isinstance(x, jax.Array) and x.sharding == sharding:
        return x
    if hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = _replicated(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    host = np.asarray(jax.device_get(x) if isinstance(x, jax.Array) else x)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def host_value(x) -> np.ndarray:
    """A replicated array's value as NumPy, in any process (no collective)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        x = x.addressable_data(0)
    return np.asarray(jax.device_get(x))
