"""Resumable work keyed by (item, method): which items a method has done, and recording one item's outcome.

Screening results (candidate, potential), kappa results (candidate, calculator and method), DFT jobs (candidate,
preset), hull references (chemical system, potential) and vdW build records (name, build and kind) are each one
document per (item, method), made unique by the document's index. A run that is killed and started again asks the
ledger what is done and does only the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import mongoengine as me
from mongoengine.errors import NotUniqueError


@dataclass(frozen=True)
class Ledger:
    """The records of ``document`` under one method: ``item`` names the field of the item, ``method`` the fields
    (and values) of the method, e.g. ``Ledger(ScreeningResult, "candidate", {"mlip": "sevenn-l3i5"})``."""

    document: type[me.Document]
    item: str
    method: Mapping[str, Any] = field(default_factory=dict)

    def query(self, **where) -> me.QuerySet:
        """The method's records (those matching ``where`` too, e.g. ``status="ok"``)."""
        return self.document.objects(**self.method, **where)

    def done(self, **where) -> set:
        """Keys of the items the method has recorded (stored values: ids for references, names for strings)."""
        column = self.document._fields[self.item].db_field
        return {row[column] for row in self.query(**where).only(self.item).as_pymongo() if column in row}

    def get(self, key) -> me.Document | None:
        """The record of item ``key``, or None."""
        return self.query(**{self.item: key}).first()

    def save(self, key, **fields) -> None:
        """Store (or replace the given fields of) the record of item ``key``."""
        self.query(**{self.item: key}).update_one(upsert=True, **{f"set__{k}": v for k, v in fields.items()})

    def claim(self, key, **fields) -> me.Document:
        """The record of item ``key``, created with ``fields`` when there is none (the first writer wins a race)."""
        record = self.get(key)
        if record is not None:
            return record
        try:
            return self.document(**self.method, **{self.item: key}, **fields).save()
        except NotUniqueError:  # another process created it meanwhile
            return self.query(**{self.item: key}).get()
