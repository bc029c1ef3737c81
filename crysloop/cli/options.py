"""Option parsing shared by several commands."""

from __future__ import annotations

import math

import typer
from pydantic import BaseModel

from crysloop.errors import InputError


def parse_conditions(options: list[str]) -> dict[str, float]:
    """``["stable=1", "ehull=0.0"]`` -> ``{"stable": 1.0, "ehull": 0.0}``; anything else is an InputError."""
    conditions = {}
    for option in options:
        name, sep, value = option.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not sep or not name.strip() or not math.isfinite(number):
            raise InputError(
                f"--condition {option!r}: expected NAME=NUMBER (a NAME=VALUE pair with a numeric value, e.g. stable=1)"
            )
        conditions[name.strip()] = number
    return conditions


def finite(value: float | None) -> float | None:
    """Option callback: NaN and infinities are rejected (they would pass every range check silently)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def positive(value: float | None) -> float | None:
    """Option callback: a finite number above zero (lengths, thresholds, tolerances)."""
    if finite(value) is not None and value <= 0:
        raise typer.BadParameter(f"{value} is not positive")
    return value


def field_option(model: type[BaseModel], name: str, *flags: str, **kwargs) -> typer.models.OptionInfo:
    """An option for field ``name`` of a config class: its help is the field's description and, left unset (None),
    it takes the class default, so no default is restated here."""
    info = model.model_fields[name]
    shown = "" if info.default_factory is not None else f" (default: {_shown(info.default)})"
    return typer.Option(None, *flags, help=f"{info.description}{shown}", show_default=False, **kwargs)


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return "none" if value is None else str(value)


def names(text: str) -> tuple[str, ...]:
    """``"a, b,c"`` -> ``("a", "b", "c")``: a comma-separated option as a tuple of names."""
    return tuple(name.strip() for name in text.split(",") if name.strip())
