"""Per-session work on Dask distributed: a LocalCluster by default, or an existing scheduler.

``Executor("local")`` starts a LocalCluster (one thread per worker, worker processes, one BLAS
thread each); ``Executor("tcp://host:8786")`` connects to a running scheduler;
``Executor("none")`` runs everything in this process (for debugging). The same pure functions
run either way, so results are identical (tested).
"""

from __future__ import annotations

import os
from typing import Any


class _Done:
    """A finished in-process result with the Future interface we use."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def result(self) -> Any:
        return self._value


class Executor:
    def __init__(self, scheduler: str = "local", n_workers: int | None = None) -> None:
        self.scheduler = scheduler
        self.client = None
        self.cluster = None
        if scheduler == "none":
            return
        from distributed import Client, LocalCluster

        if scheduler == "local":
            n = n_workers or max(1, min(2, os.cpu_count() or 1))
            self.cluster = LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=40,
                env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
            )
            self.client = Client(self.cluster)
        else:
            try:
                self.client = Client(scheduler, timeout="20s")
            except OSError as err:
                from rtdecode.errors import RtdecodeError

                raise RtdecodeError(f"--scheduler {scheduler}: cannot reach a Dask scheduler there ({err})") from None

    @property
    def description(self) -> str:
        if self.client is None:
            return "in-process (no Dask)"
        n = len(self.client.scheduler_info().get("workers", {}))
        where = "LocalCluster" if self.cluster is not None else self.scheduler
        return f"Dask {where}, {n} workers"

    def submit(self, fn, *args, **kwargs):
        if self.client is None:
            args = tuple(a.result() if isinstance(a, _Done) else a for a in args)
            kwargs = {k: (v.result() if isinstance(v, _Done) else v) for k, v in kwargs.items()}
            return _Done(fn(*args, **kwargs))
        return self.client.submit(fn, *args, pure=False, **kwargs)

    def scatter(self, obj):
        if self.client is None:
            return obj
        return self.client.scatter(obj, broadcast=False)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
