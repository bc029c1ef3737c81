"""``crysloop server``: a Prefect server with its UI, where campaigns, rounds and tasks show up by name."""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

console = Console()


def server(
    host: str = typer.Option("127.0.0.1", help="Address to bind; keep localhost unless behind a proxy."),
    port: int = typer.Option(4200, help="Port of the API and UI."),
) -> None:
    """Start a Prefect server with its UI (then set PREFECT_API_URL=http://HOST:PORT/api for runs to show up)."""
    console.print(
        f"Prefect UI on http://{host}:{port}  --  in other shells: export PREFECT_API_URL=http://{host}:{port}/api"
    )
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    prefect = os.path.join(os.path.dirname(sys.executable), "prefect")
    os.execve(prefect, [prefect, "server", "start", "--host", host, "--port", str(port)], env)
