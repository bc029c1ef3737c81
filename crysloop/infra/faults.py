"""Deterministic crash points for fault-injection tests: ``CRYSLOOP_FAULT_POINT=stage:n`` kills the process.

The campaign flow names the stage (and round) it enters (:func:`enter`) and the embedded store reports each durable
write (:func:`after_write`); the process dies with ``os._exit(137)``, as under ``kill -9``, right after its n-th
write in that stage (n = 0: on entering it). A point is ``stage:n`` (any round) or ``stage@round:n``; a
comma-separated list arms the first point of each stage, dies at the first one reached, and names it on stderr.
``CRYSLOOP_FAULT_LOG=path`` appends
"stage@round n" for every write, so a test can learn where the writes of an uninterrupted run fall. Both unset
(always, outside tests): no effect.
"""

from __future__ import annotations

import os

_stage: str | None = None
_round: int | None = None
_writes = 0


def enter(stage: str, round_index: int | None = None) -> None:
    """Start counting the writes of campaign stage ``stage`` of round ``round_index``."""
    global _stage, _round, _writes
    _stage, _round, _writes = stage, round_index, 0
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
            handle.write(f"{_stage}@{_round} {_writes}\n")
    _check()


def _check() -> None:
    spec = os.environ.get("CRYSLOOP_FAULT_POINT")
    if not spec:
        return
    seen = set()
    for point in spec.split(","):
        name, _, n = point.strip().rpartition(":")
        if name in seen:
            continue  # only the first point of a stage is armed; the next ones count from where it died
        seen.add(name)
        if name in (_stage, f"{_stage}@{_round}") and n.isdigit() and int(n) == _writes:
            os.write(2, f"\nfault point {point.strip()}\n".encode())
            os._exit(137)
