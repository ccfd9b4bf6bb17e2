"""What every command shares: the Typer app, consoles, settings and logging, errors."""

from __future__ import annotations

import logging
import sys

import typer
from pydantic import ValidationError
from rich.console import Console

from voice_agent.calls.log_context import JsonFormatter
from voice_agent.config import Settings

app = typer.Typer(
    help="Full-duplex AI phone agent for Asterisk (ARI). Settings: VOICE_AGENT_* env vars.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(width=max(120, Console().width))
err = Console(stderr=True)


def settings_from_env(**overrides: object) -> Settings:
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        err.print(f"[red]invalid configuration:[/red]\n{exc}")
        raise typer.Exit(2) from exc
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else
                         logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level, handlers=[handler])
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return settings


def fail(message: str, code: int = 1) -> typer.Exit:
    # soft_wrap: a FILE:LINE path is never broken across lines.
    err.print(f"[red]error:[/red] {message}", soft_wrap=True, highlight=False)
    return typer.Exit(code)
