"""Where tasks run: threads of the flow's process, local worker processes, or a Dask cluster."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ExecutorConfig(BaseModel):
    """Where tasks run: threads of the flow's process, local worker processes (CPU screening in parallel), or a
    Dask cluster (local processes or a scheduler address)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["threads", "processes", "dask"] = Field(
        "threads", description="Where tasks run: threads (this process), processes or dask."
    )
    address: str | None = Field(None, description="tcp://host:8786 of a running Dask scheduler; None = local cluster.")
    workers: int = Field(
        2,
        ge=1,
        description="Tasks at once: worker processes (processes, a local Dask cluster), and "
        "relaxations or phonon checks in flight on any kind.",
    )


def limit_threads(threads: int) -> None:
    """Give a worker process its share of the cores (torch and BLAS), so parallel MLIP tasks do not oversubscribe."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)
