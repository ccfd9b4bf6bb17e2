"""Commands for the people who write tenants: ``tenants check``, ``tenants dialplan``, ``chat``."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Annotated

import typer

from voice_agent.cli.common import app, console, err, fail
from voice_agent.tenants import (
    TENANTS_DIR_ENV,
    TenantFileError,
    TenantRegistry,
    UnknownTenantError,
    tenants_directory,
)

tenants_app = typer.Typer(help="Check the tenant files and print their dialplan "
                          f"(the directory: ${TENANTS_DIR_ENV}, else the shipped tenants).",
                          no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")

DirectoryArg = Annotated[Path | None, typer.Argument(
    help=f"Tenants directory (default: ${TENANTS_DIR_ENV}, else the shipped tenants).",
    show_default=False)]


def _registry(directory: Path | None) -> TenantRegistry:
    try:
        return TenantRegistry.load(directory)
    except TenantFileError as exc:
        raise fail(f"{exc}\n(run `voice-agent tenants check` for every problem)", 2) from exc


@tenants_app.command()
def check(directory: DirectoryArg = None) -> None:
    """Validate every tenant file: schema, SQL against the tenant's own tables, templates,
    patterns, confirmations, and each example conversation rehearsed through the engine.
    Prints FILE:LINE: PROBLEM for each; exits 1 if there is any."""
    from voice_agent.dialog.tenant_check import check_directory

    root = directory or tenants_directory()
    if not root.is_dir():
        raise fail(f"{root} is not a directory", 2)
    count, problems = check_directory(root)
    for problem in problems:
        err.print(f"[red]{problem}[/red]", highlight=False, soft_wrap=True)
    if problems:
        raise fail(f"{len(problems)} problem(s) in {root}")
    console.print(f"[green]ok[/green]: {count} tenant(s) in {root}", highlight=False)


@tenants_app.command("dialplan")
def dialplan_command(
    directory: DirectoryArg = None,
    app_name: Annotated[str, typer.Option("--app", help="Stasis application name.")]
    = "voice_agent",
    agi_host: Annotated[str, typer.Option(help="FastAGI host of `voice-agent agi`.")]
    = "127.0.0.1",
    agi_port: Annotated[int, typer.Option(help="FastAGI port.")] = 4573,
) -> None:
    """Print the extensions.conf contexts that route every tenant number to its tenant
    (Stasis first, the AGI fallback second), for an existing PBX."""
    from voice_agent.tenants.dialplan import dialplan

    print(dialplan(_registry(directory), app=app_name, agi_host=agi_host, agi_port=agi_port),
          end="")


@app.command()
def chat(
    tenant: Annotated[str, typer.Argument(help="Tenant name, e.g. one from `tenants check`.")],
    directory: Annotated[Path | None, typer.Option(
        help=f"Tenants directory (default: ${TENANTS_DIR_ENV}).")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        help="Where the tenant's database lives (default: a scratch copy, thrown away).")]
    = None,
    caller: Annotated[str, typer.Option(help="Caller id the tenant sees.")] = "+15550123",
    today: Annotated[str | None, typer.Option(help="Pretend today is this ISO date.")] = None,
) -> None:
    """Talk to a tenant in the terminal, with the engine a call uses (no phone, no models).
    Type what a caller would say; digits and # work as keys. Ctrl-D ends."""
    import tempfile

    from voice_agent.dialog.engine import DialogEngine
    from voice_agent.dialog.state import DialogState
    from voice_agent.tenants.data import TenantDatabases

    try:
        chosen = _registry(directory).resolve([tenant])
    except UnknownTenantError as exc:
        raise fail(str(exc), 2) from exc
    day = datetime.date.fromisoformat(today) if today else None
    with tempfile.TemporaryDirectory(prefix="voice-agent-chat-") as scratch:
        engine = DialogEngine(chosen, TenantDatabases(data_dir or Path(scratch)),
                              today=(lambda: day) if day else datetime.date.today)
        state = DialogState(caller_id=caller)
        console.print(f"[cyan]agent:[/cyan] {engine.greet(state).text}", highlight=False)
        while True:
            try:
                said = console.input("[bold]caller:[/bold] ")
            except EOFError:
                break
            reply = engine.reply(state, said)
            marks = " ".join(m for m, on in (("transfers to a person", reply.transfer),
                                              ("ends the call", reply.done)) if on)
            console.print(f"[cyan]agent:[/cyan] {reply.text} [dim]({reply.intent}"
                          f"{', ' + marks if marks else ''})[/dim]", highlight=False)
            if reply.done or reply.transfer:
                break
        engine.db.close()
