"""Runtime settings of crysloop, read from ``CRYSLOOP_*`` environment variables (or a ``.env`` file)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "crysloop"


class Settings(BaseSettings):
    """Where crysloop keeps data, which database it talks to and which engines it runs."""

    model_config = SettingsConfigDict(env_prefix="CRYSLOOP_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir, description="Embedded database, caches, runs.")
    mongodb_uri: str | None = Field(
        default=None, description="mongodb://user:password@host:27017/?authSource=admin; unset = embedded database."
    )
    db_name: str = "crysloop"
    mlip: str = Field(
        default="mattersim-1m",
        description="Default potential: mattersim-1m (sevenn-l3i5 when its weights are absent), mattersim-5m, "
        "sevenn-l3i5, sevenn-0 or chgnet.",
    )
    device: str = Field(default="auto", description="torch device for models and potentials: auto, cpu, cuda[:N].")
    vasp_cmd: str = Field(default="vasp_std", description="Command custodian runs for VASP.")
    vasp_version: str = Field(
        default="6.4", description="VASP version; below 6.4 slabs relax ions only (no LATTICE_CONSTRAINTS)."
    )

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def db_dir(self) -> Path:
        return self.data_dir / "db"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; call ``get_settings.cache_clear()`` after changing the environment."""
    return Settings()


def available_devices() -> list[str]:
    """The torch devices this machine has: ``cpu``, then ``cuda:N`` per visible GPU and ``mps`` on Apple silicon."""
    import torch

    devices = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def resolve_device(device: str | None = None) -> str:
    """The torch device to use: ``device``, else ``settings.device``; ``auto`` means ``cuda`` when a GPU is visible.

    A device this machine does not have (``cuda`` without a GPU, ``tpu``, ``cuda:3`` on a one-GPU node) is an
    ``InputError`` naming the devices that are available.
    """
    from crysloop.errors import InputError

    requested = (device or get_settings().device).strip().lower()
    available = available_devices()
    if requested == "auto":
        return "cuda" if len(available) > 1 and available[1].startswith("cuda") else "cpu"
    if requested in available or (requested == "cuda" and "cuda:0" in available):
        return requested
    raise InputError(f"device {requested!r} is not available on this machine; available: auto, {', '.join(available)}")
