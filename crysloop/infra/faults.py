"""Deterministic crash points for fault-injection tests: ``CRYSLOOP_FAULT_POINT=stage:n`` kills the process.

The campaign flow names the stage it enters (:func:`enter`) and the embedded store reports each durable write
(:func:`after_write`); the process dies with ``os._exit(137)``, as under ``kill -9``, right after its n-th write
in that stage (n = 0: on entering it). ``CRYSLOOP_FAULT_LOG=path`` appends "stage n" for every write instead, so a
test can learn where the writes of an uninterrupted run fall. Both unset (always, outside tests): no effect.
"""

from __future__ import annotations

import os

_stage: str | None = None
_writes = 0


def enter(stage: str) -> None:
    """Start counting the writes of campaign stage ``stage``."""
    global _stage, _writes
    _stage, _writes = stage, 0
    _check()


def after_write() -> None:
    """Called by the store after each durable write."""
    global _writes
    if _stage is None:
        return
    _writes += 1
    log = os.environ.get("CRYSLOOP_FAULT_LOG")
    if log:
        with open(log, "a") as handle:
            handle.write(f"{_stage} {_writes}\n")
    _check()


def _check() -> None:
    if os.environ.get("CRYSLOOP_FAULT_POINT") == f"{_stage}:{_writes}":
        os._exit(137)
