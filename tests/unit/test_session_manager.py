"""SessionManager + CallSession: event dispatch and the call registry, against a fake ARI."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st

from tests.helpers import eventually
from voice_agent.ari.ari_session_manager import SessionManager
from voice_agent.ari.asterisk_ari import (
    AriConflictError,
    AriConnectionError,
    AriError,
    AriNotFoundError,
)
from voice_agent.ari.call_session import CallSession
from voice_agent.calls.record import TENANT_VARIABLE, CallState
from voice_agent.config import Settings
from voice_agent.dev.bench.fuzz import ari_events
from voice_agent.tenants import TenantRegistry

# --------------------------------------------------------------------- fake ARI


def not_found(channel_id: str) -> AriNotFoundError:
    return AriNotFoundError("POST", f"/channels/{channel_id}", 404, "Channel not found")


class FakeAri:
    """Records every REST call; channel-scoped calls can be made to fail.

    ``play`` behaves like Asterisk: it returns at once (playback queued) and, when
    ``auto_finish`` is on, the ``PlaybackFinished`` event arrives on a later loop turn.
    """

    def __init__(self) -> None:
        self.base_url = "http://fake-asterisk:8088"
        self.app = "voice_agent"
        self.connected = asyncio.Event()
        #: Bridges that exist in the fake Asterisk (for reconcile).
        self.live_bridges: list[str] = []
        self.calls: list[tuple[Any, ...]] = []
        #: Channels that no longer exist: every call on them raises AriNotFoundError.
        self.gone: set[str] = set()
        #: (method, channel_id) -> error raised by that one call.
        self.errors: dict[tuple[str, str], AriError] = {}
        self.live_channels: list[str] = []
        #: Channel id -> its ARI "dialplan" object (which app it sits in), for reconcile.
        self.dialplans: dict[str, dict[str, str]] = {}
        self.list_channels_error: AriError | None = None
        self.auto_finish = True
        self.playbacks: list[tuple[str, str, str]] = []
        self.manager: SessionManager | None = None

    def _record(self, method: str, channel_id: str, *rest: Any) -> None:
        self.calls.append((method, channel_id, *rest))
        if channel_id in self.gone:
            raise not_found(channel_id)
        error = self.errors.get((method, channel_id))
        if error is not None:
            raise error

    def calls_for(self, channel_id: str) -> list[str]:
        return [c[0] for c in self.calls if c[1] == channel_id]

    def finish(self, playback_id: str, state: str = "done") -> None:
        assert self.manager is not None
        self.manager.dispatch(playback_finished(playback_id, state))

    async def answer(self, channel_id: str) -> None:
        self._record("answer", channel_id)

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        self._record("hangup", channel_id, reason)

    async def play(self, channel_id: str, media: str, playback_id: str) -> dict[str, Any]:
        self._record("play", channel_id, media, playback_id)
        self.playbacks.append((channel_id, media, playback_id))
        if self.auto_finish:
            asyncio.get_running_loop().call_soon(self.finish, playback_id)
        return {"id": playback_id, "state": "queued"}

    async def set_variable(self, channel_id: str, name: str, value: str) -> None:
        self._record("set_variable", channel_id, name, value)

    async def create_bridge(self, bridge_id: str, bridge_type: str = "mixing") -> dict[str, Any]:
        self.calls.append(("create_bridge", bridge_id, bridge_type))
        return {"id": bridge_id, "bridge_type": bridge_type}

    async def add_to_bridge(self, bridge_id: str, channel_id: str) -> None:
        self._record("add_to_bridge", channel_id, bridge_id)

    async def destroy_bridge(self, bridge_id: str) -> None:
        self.calls.append(("destroy_bridge", bridge_id))

    async def list_channels(self) -> list[dict[str, Any]]:
        self.calls.append(("list_channels", ""))
        if self.list_channels_error is not None:
            raise self.list_channels_error
        return [{"id": channel_id, "state": "Up", "dialplan": self.dialplans.get(channel_id, {})}
                for channel_id in self.live_channels]

    async def events(self, on_connected: Any = None) -> AsyncIterator[dict[str, Any]]:
        """An events socket on which nothing happens (tests dispatch events by hand)."""
        await asyncio.Event().wait()
        yield {}

    async def list_bridges(self) -> list[dict[str, Any]]:
        self.calls.append(("list_bridges", ""))
        return [{"id": bridge_id} for bridge_id in self.live_bridges]

    def bridge_calls(self, method: str) -> list[str]:
        return [c[1] for c in self.calls if c[0] == method]


# ------------------------------------------------------------------- events


def stasis_start(
    channel_id: str,
    args: list[str] | None = None,
    *,
    name: str | None = None,
    number: str = "555",
) -> dict[str, Any]:
    return {
        "type": "StasisStart",
        "application": "voice_agent",
        "args": ["techstore"] if args is None else args,
        "channel": {
            "id": channel_id,
            "name": name or f"PJSIP/test-caller-{channel_id}",
            "state": "Ring",
            "caller": {"name": "", "number": number},
            "dialplan": {"context": "voice-agent-ari", "exten": "18005551234", "priority": 2,
                         "app_name": "Stasis", "app_data": "voice_agent,techstore"},
        },
    }


def channel_gone(channel_id: str, kind: str = "StasisEnd") -> dict[str, Any]:
    return {"type": kind, "channel": {"id": channel_id}, "cause_txt": "Normal Clearing"}


def dtmf(channel_id: str, digit: str) -> dict[str, Any]:
    return {
        "type": "ChannelDtmfReceived",
        "digit": digit,
        "duration_ms": 100,
        "channel": {"id": channel_id},
    }


def playback_finished(playback_id: str, state: str = "done") -> dict[str, Any]:
    return {"type": "PlaybackFinished", "playback": {"id": playback_id, "state": state}}


# ------------------------------------------------------------------ helpers


async def settle(condition: Callable[[], bool], turns: int = 200) -> None:
    """Let the loop run until ``condition`` holds (bounded; no real-time wait)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    assert condition(), "condition not reached after yielding to the loop"


async def spin(turns: int = 20) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


def session_task(session: CallSession) -> asyncio.Task[Any]:
    return next(t for t in asyncio.all_tasks() if t.get_name() == f"session-{session.id}")


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    monkeypatch.chdir(tmp_path)  # no stray .env
    return Settings(max_calls=2, _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def fake() -> FakeAri:
    return FakeAri()


@pytest.fixture
async def manager(fake: FakeAri, settings: Settings) -> AsyncIterator[SessionManager]:
    mgr = SessionManager(fake, TenantRegistry.load(), settings)  # type: ignore[arg-type]
    fake.manager = mgr
    yield mgr
    await mgr.shutdown()


async def start_call(
    manager: SessionManager, channel_id: str, args: list[str] | None = None
) -> CallSession:
    manager.dispatch(stasis_start(channel_id, args))
    session = manager.sessions[channel_id]
    await settle(lambda: session.state is CallState.LISTENING)
    return session


# -------------------------------------------------------------------- calls


async def test_known_tenant_call_is_set_up(manager: SessionManager, fake: FakeAri) -> None:
    manager.dispatch(stasis_start("c1", ["techstore"]))
    assert "c1" in manager.sessions
    session = manager.sessions["c1"]
    assert session.state is CallState.STARTING
    assert manager.calls_total == 1

    await settle(lambda: session.state is CallState.LISTENING)

    bridge_id = f"voice_agent-bridge-{session.id}"
    assert fake.calls == [
        ("answer", "c1"),
        ("create_bridge", bridge_id, "mixing"),
        ("add_to_bridge", "c1", bridge_id),
        ("set_variable", "c1", TENANT_VARIABLE, "techstore"),
        ("play", "c1", "sound:hello-world", fake.playbacks[0][2]),
    ]
    record = session.record
    assert record.states == [CallState.STARTING, CallState.GREETING, CallState.LISTENING]
    assert record.tenant == "techstore"
    assert record.caller == "555" and record.number == "18005551234"  # who, and what they dialled
    assert record.channel_name == "PJSIP/test-caller-c1"
    assert record.bridges == [bridge_id]
    assert record.prompts == [("hello-world", "done")]
    assert manager.playbacks.in_flight == 0
    assert not manager.rejected
    assert not session_task(session).done()  # holds the line


@pytest.mark.parametrize(
    ("arg", "tenant"),
    [("techstore", "techstore"), ("healthplus", "healthplus"), ("edulearn", "edulearn"),
     ("HealthPlus", "healthplus")],
)
async def test_each_tenant_is_tagged_on_the_channel(
    manager: SessionManager, fake: FakeAri, arg: str, tenant: str
) -> None:
    session = await start_call(manager, "c1", [arg])
    assert session.tenant.name == tenant
    assert ("set_variable", "c1", TENANT_VARIABLE, tenant) in fake.calls


async def test_greeting_waits_for_playback_finished(
    manager: SessionManager, fake: FakeAri
) -> None:
    fake.auto_finish = False
    manager.dispatch(stasis_start("c1"))
    session = manager.sessions["c1"]
    await settle(lambda: bool(fake.playbacks))
    await spin()
    assert session.state is CallState.GREETING
    assert manager.playbacks.in_flight == 1

    fake.finish("some-other-playback")
    await spin()
    assert session.state is CallState.GREETING

    fake.finish(fake.playbacks[0][2], state="failed")
    await settle(lambda: session.state is CallState.LISTENING)
    assert session.record.prompts == [("hello-world", "failed")]
    assert manager.playbacks.in_flight == 0


# ---------------------------------------------------------- helper channels


@pytest.mark.parametrize(
    "name",
    ["UnicastRTP/127.0.0.1:40000-0x7f0000001", "Snoop/c1-00000001", "WebSocket/media-1",
     "AudioSocket/127.0.0.1:9092-1"],
    ids=["unicast-media", "snoop", "websocket", "audiosocket"],  # ids dodge `-k "not rtp"`
)
async def test_helper_channels_are_ignored(
    manager: SessionManager, fake: FakeAri, name: str
) -> None:
    manager.dispatch(stasis_start("h1", [], name=name))
    await spin()
    assert manager.sessions == {}
    assert not manager.rejected
    assert fake.calls == []
    assert manager.calls_total == 0


async def test_registered_helper_channel_is_ignored_even_with_args(
    manager: SessionManager, fake: FakeAri
) -> None:
    manager.helpers.expect("media-1")
    manager.dispatch(stasis_start("media-1", ["techstore"], name="PJSIP/looks-like-a-caller"))
    await spin()
    assert manager.sessions == {}
    assert not manager.rejected
    assert fake.calls == []


async def test_helper_prefix_with_tenant_args_is_a_caller(manager: SessionManager) -> None:
    # The prefix rule only applies to channels entering Stasis without arguments.
    manager.dispatch(stasis_start("c1", ["techstore"], name="WebSocket/caller-1"))
    assert "c1" in manager.sessions


# ---------------------------------------------------------------- rejection


@pytest.mark.parametrize("args", [["nosuch"], [], [""]])
async def test_unknown_or_missing_tenant_is_rejected(
    manager: SessionManager, fake: FakeAri, settings: Settings, args: list[str]
) -> None:
    manager.dispatch(stasis_start("c1", args))
    assert manager.sessions == {}
    assert len(manager.rejected) == 1
    rejected = manager.rejected[0]
    assert rejected.channel_id == "c1"
    assert rejected.channel_name == "PJSIP/test-caller-c1"
    assert rejected.prompt == settings.unknown_tenant_prompt
    assert "edulearn, healthplus, techstore" in rejected.reason

    await settle(lambda: "hangup" in fake.calls_for("c1"))
    assert fake.calls_for("c1") == ["answer", "play", "hangup"]
    assert fake.playbacks[0][1] == f"sound:{settings.unknown_tenant_prompt}"
    assert rejected.prompt_state == "done"
    assert manager.calls_total == 0
    assert not manager.completed


async def test_stasis_start_without_args_key_is_rejected(
    manager: SessionManager, fake: FakeAri, settings: Settings
) -> None:
    event = stasis_start("c1")
    del event["args"]
    manager.dispatch(event)
    assert manager.sessions == {}
    assert [r.prompt for r in manager.rejected] == [settings.unknown_tenant_prompt]
    await settle(lambda: "hangup" in fake.calls_for("c1"))


async def test_rejected_caller_gone_still_gets_hangup_attempt(
    manager: SessionManager, fake: FakeAri
) -> None:
    fake.gone.add("c1")
    manager.dispatch(stasis_start("c1", ["nosuch"]))
    await settle(lambda: "hangup" in fake.calls_for("c1"))
    await spin()
    rejected = manager.rejected[0]
    assert rejected.prompt_state.startswith("not played:")
    assert "play" not in fake.calls_for("c1")


async def test_admission_limit(
    manager: SessionManager, fake: FakeAri, settings: Settings
) -> None:
    await start_call(manager, "c1")
    await start_call(manager, "c2")
    manager.dispatch(stasis_start("c3"))
    assert set(manager.sessions) == {"c1", "c2"}
    assert [(r.channel_id, r.reason, r.prompt) for r in manager.rejected] == [
        ("c3", "admission limit reached", settings.busy_prompt)
    ]
    assert settings.busy_prompt != settings.unknown_tenant_prompt
    await settle(lambda: "hangup" in fake.calls_for("c3"))
    assert ("play", "c3", f"sound:{settings.busy_prompt}") == fake.calls[-2][:3]
    assert "hangup" not in fake.calls_for("c1") + fake.calls_for("c2")
    assert manager.calls_total == 2

    # a slot frees up when a call ends
    manager.dispatch(channel_gone("c1"))
    await settle(lambda: "c1" not in manager.sessions)
    manager.dispatch(stasis_start("c4"))
    assert set(manager.sessions) == {"c2", "c4"}
    assert manager.calls_total == 3


async def test_repeated_stasis_start_is_the_same_call(
    manager: SessionManager, fake: FakeAri
) -> None:
    session = await start_call(manager, "c1")
    manager.dispatch(stasis_start("c1"))
    await spin()
    assert manager.sessions["c1"] is session
    assert manager.calls_total == 1
    assert fake.calls_for("c1").count("answer") == 1


# --------------------------------------------------------------------- DTMF


async def test_dtmf_is_recorded(manager: SessionManager) -> None:
    session = await start_call(manager, "c1")
    other = await start_call(manager, "c2")
    manager.dispatch(dtmf("c1", "5"))
    manager.dispatch(dtmf("c1", "#"))
    manager.dispatch(dtmf("unknown-channel", "9"))
    assert [digit for _, digit in session.record.dtmf] == ["5", "#"]
    assert other.record.dtmf == []


# ------------------------------------------------------------------- hang-up


@pytest.mark.parametrize("kind", ["StasisEnd", "ChannelDestroyed"])
async def test_caller_hangup_ends_the_session(
    manager: SessionManager, fake: FakeAri, kind: str
) -> None:
    session = await start_call(manager, "c1")
    task = session_task(session)
    bridge_id = session.record.bridges[0]

    manager.dispatch(channel_gone("c1", kind))
    await settle(task.done)

    assert not task.cancelled()
    assert task.exception() is None
    assert "c1" not in manager.sessions
    assert list(manager.completed) == [session.record]
    record = session.record
    assert record.end_reason == "caller hung up (Normal Clearing)"
    assert record.states[-1] is CallState.CLOSED
    assert record.ended_at is not None
    assert fake.bridge_calls("destroy_bridge") == [bridge_id]
    assert "hangup" not in fake.calls_for("c1")


async def test_stasis_end_then_channel_destroyed(manager: SessionManager, fake: FakeAri) -> None:
    session = await start_call(manager, "c1")
    manager.dispatch(channel_gone("c1", "StasisEnd"))
    manager.dispatch(channel_gone("c1", "ChannelDestroyed"))
    await settle(lambda: "c1" not in manager.sessions)
    assert session.record.end_reason == "caller hung up (Normal Clearing)"
    assert len(manager.completed) == 1
    assert len(fake.bridge_calls("destroy_bridge")) == 1


async def test_cause_falls_back_to_event_type(manager: SessionManager) -> None:
    session = await start_call(manager, "c1")
    manager.dispatch({"type": "ChannelDestroyed", "channel": {"id": "c1"}})
    await settle(lambda: "c1" not in manager.sessions)
    assert session.record.end_reason == "caller hung up (ChannelDestroyed)"


async def test_hangup_during_greeting_cancels_playback(
    manager: SessionManager, fake: FakeAri
) -> None:
    fake.auto_finish = False
    manager.dispatch(stasis_start("c1"))
    session = manager.sessions["c1"]
    await settle(lambda: bool(fake.playbacks))
    assert session.state is CallState.GREETING

    manager.dispatch(channel_gone("c1"))
    await settle(lambda: "c1" not in manager.sessions)
    assert manager.playbacks.in_flight == 0
    assert session.record.prompts == []
    assert session.record.states == [CallState.STARTING, CallState.GREETING, CallState.CLOSED]
    assert fake.bridge_calls("destroy_bridge") == session.record.bridges
    assert "hangup" not in fake.calls_for("c1")


async def test_hangup_before_session_task_runs(manager: SessionManager, fake: FakeAri) -> None:
    manager.dispatch(stasis_start("c1"))
    session = manager.sessions["c1"]
    manager.dispatch(channel_gone("c1"))  # same loop turn: nothing ran yet
    await settle(lambda: "c1" not in manager.sessions)
    assert fake.calls == []
    assert session.record.states == [CallState.STARTING, CallState.CLOSED]
    assert session.record.end_reason == "caller hung up (Normal Clearing)"
    assert list(manager.completed) == [session.record]


async def test_caller_vanishes_on_answer(manager: SessionManager, fake: FakeAri) -> None:
    fake.gone.add("c1")
    manager.dispatch(stasis_start("c1"))
    session = manager.sessions["c1"]
    task = session_task(session)
    await settle(task.done)
    assert task.exception() is None
    assert "c1" not in manager.sessions
    assert list(manager.completed) == [session.record]
    assert session.record.end_reason == "caller hung up during setup"
    assert session.record.states == [CallState.STARTING, CallState.CLOSED]
    assert fake.calls_for("c1") == ["answer"]  # no hang-up of a gone channel
    assert fake.bridge_calls("create_bridge") == []


async def test_caller_vanishes_after_bridge_created(
    manager: SessionManager, fake: FakeAri
) -> None:
    fake.errors[("set_variable", "c1")] = not_found("c1")
    manager.dispatch(stasis_start("c1"))
    session = manager.sessions["c1"]
    await settle(lambda: "c1" not in manager.sessions)
    assert session.record.end_reason == "caller hung up during setup"
    assert fake.bridge_calls("destroy_bridge") == session.record.bridges != []
    assert "hangup" not in fake.calls_for("c1")


async def test_other_ari_error_during_setup_hangs_up(
    manager: SessionManager, fake: FakeAri
) -> None:
    fake.errors[("answer", "c1")] = AriConflictError(
        "POST", "/channels/c1/answer", 409, "Channel not in Stasis application"
    )
    manager.dispatch(stasis_start("c1"))
    session = manager.sessions["c1"]
    await settle(lambda: "c1" not in manager.sessions)
    assert session.record.end_reason.startswith("error: ")
    assert "409" in session.record.end_reason
    assert fake.calls_for("c1") == ["answer", "hangup"]
    assert session.record.states[-1] is CallState.CLOSED


async def test_max_call_length_hangs_up(
    fake: FakeAri, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(max_call_seconds=0.001, _env_file=None)  # type: ignore[call-arg]
    manager = SessionManager(fake, TenantRegistry.load(), settings)  # type: ignore[arg-type]
    fake.manager = manager
    try:
        manager.dispatch(stasis_start("c1"))
        session = manager.sessions["c1"]
        await eventually(lambda: "c1" not in manager.sessions, timeout=1.0, interval=0.001,
                         what="hang-up at the max call length")  # normally a couple of ms
        assert session.record.end_reason.startswith("max call length")
        assert fake.calls_for("c1")[-1] == "hangup"
        assert fake.bridge_calls("destroy_bridge") == session.record.bridges
    finally:
        await manager.shutdown()


# ---------------------------------------------------------------- reconcile


async def test_reconcile_closes_vanished_sessions(
    manager: SessionManager, fake: FakeAri
) -> None:
    gone = await start_call(manager, "c1")
    alive = await start_call(manager, "c2")
    fake.live_channels = ["c2", "some-other-channel"]

    await manager.reconcile()
    await settle(lambda: "c1" not in manager.sessions)

    assert set(manager.sessions) == {"c2"}
    assert gone.record.end_reason == "channel gone after ARI reconnect"
    assert gone.record.states[-1] is CallState.CLOSED
    assert "hangup" not in fake.calls_for("c1")
    assert alive.state is CallState.LISTENING
    assert list(manager.completed) == [gone.record]


async def test_reconcile_survives_ari_errors(manager: SessionManager, fake: FakeAri) -> None:
    session = await start_call(manager, "c1")
    fake.list_channels_error = AriConnectionError("cannot reach Asterisk ARI")
    await manager.reconcile()
    await spin()
    assert manager.sessions == {"c1": session}
    assert session.state is CallState.LISTENING


# ----------------------------------------------------------------- shutdown


async def test_shutdown_ends_live_calls(
    manager: SessionManager, fake: FakeAri, settings: Settings
) -> None:
    s1 = await start_call(manager, "c1")
    s2 = await start_call(manager, "c2")
    tasks = [session_task(s1), session_task(s2)]

    await manager.shutdown()

    assert all(t.done() for t in tasks)
    assert manager.sessions == {}
    assert manager.accepting is False
    assert "hangup" in fake.calls_for("c1")
    assert "hangup" in fake.calls_for("c2")
    assert sorted(fake.bridge_calls("destroy_bridge")) == sorted(
        s1.record.bridges + s2.record.bridges
    )
    assert {r.channel_id for r in manager.completed} == {"c1", "c2"}
    assert {r.end_reason for r in manager.completed} == {"service shutdown"}

    # after shutdown new calls are turned away
    manager.dispatch(stasis_start("c3"))
    assert manager.sessions == {}
    assert (manager.rejected[-1].channel_id, manager.rejected[-1].reason) == (
        "c3", "service shutting down"
    )
    assert manager.rejected[-1].prompt == settings.busy_prompt


async def test_shutdown_records_are_closed(manager: SessionManager) -> None:
    session = await start_call(manager, "c1")
    await manager.shutdown()
    assert session.record.ended_at is not None
    assert session.record.states[-1] is CallState.CLOSED


async def test_shutdown_cancels_pending_rejection(
    manager: SessionManager, fake: FakeAri
) -> None:
    fake.auto_finish = False
    manager.dispatch(stasis_start("c1", ["nosuch"]))
    await settle(lambda: bool(fake.playbacks))
    await manager.shutdown()
    assert fake.calls_for("c1") == ["answer", "play", "hangup"]
    assert manager.playbacks.in_flight == 0


# ----------------------------------------------------------------- dispatch


@pytest.mark.parametrize(
    "event",
    [
        {"type": "StasisStart"},
        {"type": "StasisStart", "channel": {"name": "PJSIP/no-id"}, "args": ["techstore"]},
        {"type": "StasisEnd"},
        {"type": "ChannelDestroyed", "channel": None},
        {"type": "ChannelDtmfReceived", "digit": "1"},
        {"type": "PlaybackFinished", "playback": "not-a-dict"},
    ],
)
async def test_malformed_events_are_dropped_with_a_clear_line(
    manager: SessionManager, caplog: pytest.LogCaptureFixture, event: dict[str, Any]
) -> None:
    with caplog.at_level(logging.ERROR, logger="voice_agent.ari.ari_session_manager"):
        manager.dispatch(event)
    assert f"dropping malformed ARI {event['type']} event" in caplog.text
    assert not [r for r in caplog.records if r.exc_info]  # no traceback
    assert manager.malformed_events == 1
    # the manager still works afterwards
    await start_call(manager, "c1")
    assert manager.calls_total == 1


async def test_unhandled_and_typeless_events_are_ignored(
    manager: SessionManager, fake: FakeAri, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="voice_agent.ari.ari_session_manager"):
        manager.dispatch({"type": "ChannelVarset", "channel": {"id": "c1"}})
        manager.dispatch({})
    await spin()
    assert caplog.records == []
    assert fake.calls == []
    assert manager.sessions == {}


async def test_reconcile_removes_only_our_orphans(manager: SessionManager) -> None:
    fake = manager.ari  # type: ignore[assignment]
    session = await start_call(manager, "c1")
    own_bridge = session.record.bridges[0]
    fake.live_channels = ["c1", "voice_agent-media-orphan", "someone-elses-media"]
    fake.live_bridges = [own_bridge, "voice_agent-bridge-orphan", "other-app-bridge"]
    await manager.reconcile()
    hung_up = [c[1] for c in fake.calls if c[0] == "hangup"]
    destroyed = [c[1] for c in fake.calls if c[0] == "destroy_bridge"]
    assert hung_up == ["voice_agent-media-orphan"]
    assert destroyed == ["voice_agent-bridge-orphan"]
    assert manager.orphans_removed == 2
    assert "c1" in manager.sessions


async def test_periodic_check_acts_only_on_what_it_finds_twice(manager: SessionManager) -> None:
    fake = manager.ari  # type: ignore[assignment]
    session = await start_call(manager, "c1")
    fake.live_channels = ["c1", "voice_agent-media-orphan", "voice_agent-media-being-set-up"]
    fake.live_bridges = [*session.record.bridges, "voice_agent-bridge-orphan"]
    await manager.reconcile(confirm=True)  # first sighting: nothing removed yet
    assert [c for c in fake.calls if c[0] in ("hangup", "destroy_bridge")] == []
    manager.helpers.expect("voice_agent-media-being-set-up")  # its call finished setting up
    await manager.reconcile(confirm=True)
    removed = [c[:2] for c in fake.calls if c[0] in ("hangup", "destroy_bridge")]
    assert removed == [("hangup", "voice_agent-media-orphan"),
                       ("destroy_bridge", "voice_agent-bridge-orphan")]
    assert "c1" in manager.sessions


async def test_periodic_check_closes_a_session_whose_channel_stays_gone(
    manager: SessionManager, fake: FakeAri
) -> None:
    session = await start_call(manager, "c1")
    fake.live_channels = []
    await manager.reconcile(confirm=True)
    await spin()
    assert "c1" in manager.sessions  # one sighting could be a race
    await manager.reconcile(confirm=True)
    await settle(lambda: "c1" not in manager.sessions)
    assert session.record.end_reason == "channel gone (found by the periodic check)"


async def test_janitor_runs_while_connected(fake: FakeAri) -> None:
    settings = Settings(reconcile_seconds=0.01, _env_file=None)  # type: ignore[call-arg]
    manager = SessionManager(fake, TenantRegistry.load(), settings)  # type: ignore[arg-type]
    fake.live_bridges = ["voice_agent-bridge-orphan"]
    manager.start()
    try:
        await asyncio.sleep(0.1)  # ten janitor periods
        assert manager.orphans_removed == 0  # not connected: no checks
        fake.connected.set()
        # A bounded wait for the janitor's check (not a timing assertion).
        await eventually(lambda: manager.orphans_removed > 0, interval=0.01, what="orphan removed")
        assert fake.bridge_calls("destroy_bridge")[0] == "voice_agent-bridge-orphan"
    finally:
        await manager.shutdown()


async def test_periodic_check_hangs_up_callers_stranded_in_our_app(
    manager: SessionManager, fake: FakeAri
) -> None:
    """A caller left in Stasis(voice_agent) by a dead agent is hung up; nobody else is."""
    in_our_app = {"app_name": "Stasis", "app_data": "voice_agent,techstore"}
    await start_call(manager, "live")
    fake.auto_finish = False
    manager.dispatch(stasis_start("hearing-rejection", ["nosuch"]))  # prompt still playing
    fake.live_channels = ["live", "stranded", "hearing-rejection", "other-app", "in-dialplan"]
    fake.dialplans = {"live": in_our_app, "stranded": in_our_app,
                      "hearing-rejection": {"app_name": "Stasis", "app_data": "voice_agent"},
                      "other-app": {"app_name": "Stasis", "app_data": "someone_else,x"},
                      "in-dialplan": {"app_name": "Playback", "app_data": "voice_agent"}}
    await manager.reconcile(confirm=True)
    assert "hangup" not in fake.calls_for("stranded")  # one sighting is not enough
    await manager.reconcile(confirm=True)
    hung_up = [c[1] for c in fake.calls if c[0] == "hangup"]
    assert hung_up == ["stranded"]
    assert manager.stranded_removed == 1
    assert "live" in manager.sessions


async def test_reconnect_check_never_hangs_up_callers(
    manager: SessionManager, fake: FakeAri
) -> None:
    """Right after a (re)connect a caller's StasisStart may still be queued: never touch callers."""
    fake.live_channels = ["new-caller"]
    fake.dialplans = {"new-caller": {"app_name": "Stasis", "app_data": "voice_agent,techstore"}}
    await manager.reconcile()
    await manager.reconcile()
    assert "hangup" not in fake.calls_for("new-caller")


# -------------------------------------------------------------------- fuzzing

@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(st.lists(ari_events, max_size=6))
def test_fuzzed_ari_events_are_dropped_or_handled_never_crash_a_handler(
        events: list[dict[str, Any]]) -> None:
    failures: list[logging.LogRecord] = []

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.exc_info:  # a handler crashed: a traceback, not a clear line
                failures.append(record)

    async def run() -> None:
        fake = FakeAri()
        manager = SessionManager(fake, TenantRegistry.load(),  # type: ignore[arg-type]
                                 Settings(_env_file=None))
        fake.manager = manager  # type: ignore[attr-defined]
        for event in events:
            manager.dispatch(event)
        await asyncio.sleep(0.01)  # let the calls it started take their first steps
        await manager.shutdown()
        assert all(isinstance(record.channel_id, str) for record in manager.completed)

    watch = Watch()
    logging.getLogger("voice_agent").addHandler(watch)
    try:
        asyncio.run(run())
    finally:
        logging.getLogger("voice_agent").removeHandler(watch)
    assert not failures, [f.getMessage() for f in failures]
