"""Strict pydantic configs: unknown fields and non-finite numbers are refused, and every error names its field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from crysloop.errors import InputError

Config = TypeVar("Config", bound=BaseModel)


class StrictConfig(BaseModel):
    """Base of the stage configs: a misspelt field or a NaN is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def problems(exc: ValidationError, names: Mapping[str, str] | None = None) -> str:
    """``field.sub: message; ...`` for every error of ``exc``; ``names`` renames fields (e.g. to their CLI flags)."""
    parts = []
    for error in exc.errors():
        where = ".".join(map(str, error["loc"])) or "(top)"
        parts.append(f"{(names or {}).get(where, where)}: {error['msg']}")
    return "; ".join(parts)


def build(model: type[Config], options: Mapping[str, object], flags: Mapping[str, str] | None = None) -> Config:
    """``model`` from command-line ``options`` named as its fields; those left unset (None) take the class defaults.

    A bad value is an ``InputError`` naming the option: ``--fmax: Input should be greater than 0`` (the flag is the
    field name with dashes unless ``flags`` maps the field to another).
    """
    try:
        return model.model_validate({name: value for name, value in options.items() if value is not None})
    except ValidationError as exc:
        names = {name: (flags or {}).get(name, "--" + name.replace("_", "-")) for name in options}
        raise InputError(problems(exc, names)) from None
