"""The ``crysloop`` command line: one Typer app with a sub-app per area."""

from __future__ import annotations

import logging
import os
import sys

import typer
from rich.console import Console

from crysloop.cli import campaign, data, db, demo, dft, evaluate, generate, kappa, sample, screen, server, train

app = typer.Typer(
    name="crysloop",
    help="Closed-loop inverse design of crystalline materials.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Sub-apps by role, in the order of the work: data -> models -> pipeline stages -> results -> services.
app.add_typer(data.app, name="data")
app.add_typer(train.app, name="train")
app.add_typer(sample.app, name="sample")
app.command("generate")(generate.generate)
app.add_typer(screen.app, name="screen")
app.add_typer(campaign.app, name="campaign")
app.add_typer(dft.app, name="dft")
app.add_typer(kappa.app, name="kappa")
app.add_typer(evaluate.app, name="evaluate")
app.add_typer(db.app, name="db")
app.command("demo")(demo.demo)
app.command("server")(server.server)

err_console = Console(stderr=True)


class _UserErrorFilter(logging.Filter):
    """Drops Prefect's echo (with traceback) of a run that failed on bad input: the CLI reports it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        from crysloop.errors import CrysloopError

        if record.exc_info and isinstance(record.exc_info[1], CrysloopError):
            return False
        names, todo = set(), [CrysloopError]
        while todo:
            cls = todo.pop()
            names.add(cls.__name__)
            todo += cls.__subclasses__()
        message = record.getMessage()
        return not any(f"{name}:" in message or f"{name}(" in message for name in names)


def _quiet_user_errors() -> None:
    if not os.environ.get("CRYSLOOP_DEBUG"):
        for name in ("prefect.flow_runs", "prefect.task_runs"):
            logger = logging.getLogger(name)
            if not any(isinstance(f, _UserErrorFilter) for f in logger.filters):
                logger.addFilter(_UserErrorFilter())


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; any failure becomes one ``error:`` line and a non-zero exit, never a traceback."""
    _quiet_user_errors()
    try:
        app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except typer.exceptions.TyperException as exc:  # usage errors (unknown option, invalid value): one line
        ctx = getattr(exc, "ctx", None)
        where = f" (see: {ctx.command_path} --help)" if ctx is not None and exc.exit_code == 2 else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        err_console.print(f"[bold red]error:[/] {message}{where}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except Exception as exc:
        if os.environ.get("CRYSLOOP_DEBUG"):
            raise
        message = str(exc) or type(exc).__name__
        from crysloop.errors import CrysloopError

        prefix = "" if isinstance(exc, CrysloopError) else f"{type(exc).__name__}: "
        err_console.print(f"[bold red]error:[/] {prefix}{message}", highlight=False, soft_wrap=True)
        sys.exit(1)
    sys.exit(0)
