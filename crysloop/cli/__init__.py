"""The ``crysloop`` command line: one Typer app with a sub-app per area."""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

from crysloop.cli import campaign, data, db, demo, generate
from crysloop.cli import evaluate
from crysloop.cli import dft
from crysloop.cli import kappa
from crysloop.cli import structures
from crysloop.cli import compositions
from crysloop.cli import screen

app = typer.Typer(
    name="crysloop",
    help="Closed-loop inverse design of crystalline materials.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.app, name="data")
app.add_typer(db.app, name="db")
demo.register(app)
generate.register(app)
app.add_typer(campaign.app, name="campaign")
app.add_typer(evaluate.app, name="evaluate")
app.add_typer(dft.app, name="dft")
app.add_typer(kappa.app, name="kappa")
app.add_typer(structures.app, name="structures")
app.add_typer(compositions.app, name="compositions")
app.add_typer(screen.app, name="screen")

err_console = Console(stderr=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; any failure becomes one ``error:`` line and a non-zero exit, never a traceback."""
    try:
        app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except typer.exceptions.TyperException as exc:  # usage errors: typer prints them itself
        exc.show()
        sys.exit(getattr(exc, "exit_code", 2))
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        if os.environ.get("CRYSLOOP_DEBUG"):
            raise
        message = str(exc) or type(exc).__name__
        from crysloop.errors import CrysloopError

        prefix = "" if isinstance(exc, CrysloopError) else f"{type(exc).__name__}: "
        err_console.print(f"[bold red]error:[/] {prefix}{message}", highlight=False, soft_wrap=True)
        sys.exit(1)
    sys.exit(0)
