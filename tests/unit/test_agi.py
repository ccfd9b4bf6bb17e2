"""The FastAGI fallback: protocol parsing, and whole calls against a scripted Asterisk.

The server runs for real on a TCP port; :class:`FakeAsterisk` is the other end
of one FastAGI connection, as Asterisk would drive it: it sends the environment
block, answers each command by a per-test script, writes the recordings into the
shared directory and checks the reply files it is asked to play. Speech models
are stubs (scripted transcripts, a tone for every reply); the dialog engine,
the tenants and the tenant database are the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shlex
import time
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pytest

from tests.helpers import eventually, sine
from voice_agent.agi import audio_files
from voice_agent.agi.asterisk_agi import FastAgiServer, running_agi_server
from voice_agent.agi.audio_files import (
    AudioDirectoryFull,
    has_speech,
    read_recording,
    write_reply,
)
from voice_agent.agi.protocol import (
    HANGUP,
    AgiCommandError,
    AgiError,
    AgiHangup,
    AgiProtocolError,
    AgiResponse,
    ResponseParser,
    format_command,
    parse_environment,
    parse_response,
)
from voice_agent.agi.sequential import SpeechServices
from voice_agent.audio.wav import wav_bytes
from voice_agent.calls.record import TENANT_VARIABLE, CallState
from voice_agent.config import Settings
from voice_agent.dialog.llm_dialog import APOLOGY
from voice_agent.providers.errors import ProviderConnectionError
from voice_agent.providers.stt import Transcript
from voice_agent.tenants import TenantRegistry
from voice_agent.tenants.data import TenantDatabases
from voice_agent.tenants.dialplan import dialplan

ORDER_QUESTION = "where is my order one two three four five"

# ----------------------------------------------------------------- protocol


def env_lines(script: str = "techstore") -> list[str]:
    """What Asterisk 22 sends on a FastAGI connect (launch_netscript + setup_env)."""
    return [
        "agi_network: yes",
        f"agi_network_script: {script}",
        f"agi_request: agi://127.0.0.1:4573/{script}",
        "agi_channel: PJSIP/test-caller-00000001",
        "agi_language: en",
        "agi_type: PJSIP",
        "agi_uniqueid: 1764000000.17",
        "agi_version: 22.5.0",
        "agi_callerid: 5551234",
        "agi_calleridname: unknown",
        "agi_dnid: 18005551234",
        "agi_context: voice-agent-agi",
        "agi_extension: 18005551234",
        "agi_priority: 1",
        "agi_enhanced: 0.0",
        "agi_accountcode: ",
        "agi_threadid: 140000000000",
    ]


def test_environment_is_parsed_with_colons_and_empty_values() -> None:
    request = parse_environment(env_lines())
    assert request.get("request") == "agi://127.0.0.1:4573/techstore"
    assert request.get("accountcode") == ""
    assert request.get("channel") == "PJSIP/test-caller-00000001"
    assert request.tenant_name == "techstore"
    assert request.caller == "5551234"


@pytest.mark.parametrize(("script", "tenant"), [("/edulearn", "edulearn"),
                                                ("healthplus/extra?x=1", "healthplus"),
                                                ("techstore?lang=en", "techstore"), ("", "")])
def test_tenant_is_the_first_segment_of_the_script_path(script: str, tenant: str) -> None:
    request = parse_environment([f"agi_network_script: {script}", "agi_callerid: unknown"])
    assert request.tenant_name == tenant
    assert request.caller == ""


@pytest.mark.parametrize("lines", [["GET / HTTP/1.1"], ["agi_callerid: 1"], ["foo: bar"]])
def test_environment_that_is_not_agi_is_refused(lines: list[str]) -> None:
    with pytest.raises(AgiProtocolError):
        parse_environment(lines)


def test_commands_quote_what_asterisk_would_split() -> None:
    assert format_command("STREAM", "FILE", "/a/b", "#0") == "STREAM FILE /a/b #0\n"
    assert format_command("STREAM", "FILE", "hello-world", "") == 'STREAM FILE hello-world ""\n'
    assert (format_command("SET", "VARIABLE", "X", 'say "hi" \\ now')
            == 'SET VARIABLE X "say \\"hi\\" \\\\ now"\n')
    with pytest.raises(ValueError, match="line breaks"):
        format_command("SET", "VARIABLE", "X", "1\nHANGUP")


@pytest.mark.parametrize(("line", "result", "data", "endpos", "digit"), [
    ("200 result=0", 0, "", 0, None),
    ("200 result=1", 1, "", 0, None),
    ("200 result=0 endpos=16000", 0, "", 16000, None),
    ("200 result=35 endpos=4000", 35, "", 4000, "#"),
    ("200 result=48 (dtmf) endpos=800", 48, "dtmf", 800, "0"),
    ("200 result=0 (timeout) endpos=24000", 0, "timeout", 24000, None),
    ("200 result=-1 (hangup) endpos=1200", -1, "hangup", 1200, None),
    ("200 result=1 (techstore)", 1, "techstore", 0, None),
    ("200 result= (timeout)", None, "timeout", 0, None),
])
def test_responses_are_parsed(line: str, result: int | None, data: str, endpos: int,
                              digit: str | None) -> None:
    response = parse_response(line)
    assert (response.code, response.result, response.data) == (200, result, data)
    assert (response.endpos, response.digit) == (endpos, digit)


def test_parser_sorts_hangup_provisional_and_multiline_usage() -> None:
    parser = ResponseParser()
    assert parser.feed("100 result=0 Trying...\n") is None
    assert parser.feed("HANGUP\n") is HANGUP
    assert parser.feed("520-Invalid command syntax.  Proper usage follows:\n") is None
    assert parser.feed(" Usage: RECORD FILE <filename> <format> ...\n") is None
    usage = parser.feed("520 End of proper usage.\n")
    assert isinstance(usage, AgiResponse) and usage.code == 520
    assert "Usage: RECORD FILE" in usage.text
    after = parser.feed("200 result=0\n")
    assert isinstance(after, AgiResponse) and after.result == 0
    with pytest.raises(AgiProtocolError):
        parser.feed("hello\n")


@pytest.mark.parametrize(("line", "error"), [
    ("510 Invalid or unknown command", AgiCommandError),
    ("520 Invalid command syntax.  Proper usage not available.", AgiCommandError),
    ("511 Command Not Permitted on a dead channel or intercepted channel", AgiHangup),
    ("200 result=-1 endpos=0", AgiHangup),
    ("200 result=-1 (hangup) endpos=400", AgiHangup),
])
def test_error_responses_raise(line: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_response(line).raise_for_error("STREAM FILE x #0")


def test_ok_response_passes() -> None:
    response = parse_response("200 result=0 endpos=8")
    assert response.raise_for_error("STREAM FILE x") is response


# -------------------------------------------------------------- files, config


def test_reply_is_written_as_8khz_wav_and_recordings_come_back_at_16khz(tmp_path: Path) -> None:
    pcm = sine(16000, 440, 0.5, amplitude=8000)
    seconds = write_reply(tmp_path / "say.wav", pcm)
    with wave.open(str(tmp_path / "say.wav")) as wav:
        assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (8000, 2, 1)
        assert wav.getnframes() == pytest.approx(4000, abs=30)
    assert seconds == pytest.approx(0.5, abs=0.01)
    back = read_recording(tmp_path / "say.wav")
    assert len(back) == pytest.approx(8000, abs=120)  # + the two filters' flushed tails
    assert has_speech(back)
    assert not has_speech(np.zeros(16000, np.int16))
    assert len(read_recording(tmp_path / "missing.wav")) == 0


def test_a_reply_that_does_not_fit_on_the_disk_is_directory_full_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_space(path: Path, data: bytes) -> int:
        path.open("wb").write(data[:100])  # a partial file, as a real ENOSPC leaves
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", no_space)
    with pytest.raises(AudioDirectoryFull, match="is full: No space left on device"):
        write_reply(tmp_path / "say.wav", sine(16000, 440, 0.5))
    assert not list(tmp_path.iterdir())


def test_audio_dir_is_seen_through_the_chroot_unless_overridden(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, asterisk_root=tmp_path / "root")
    assert settings.agi_audio_dir == "/var/spool/asterisk/voice-agent-agi"
    assert settings.agi_audio_host_path() == tmp_path / "root/var/spool/asterisk/voice-agent-agi"
    plain = Settings(_env_file=None, agi_audio_dir="/srv/agi/",
                     agi_audio_host_dir=Path("/srv/agi"))
    assert plain.agi_audio_dir == "/srv/agi"
    assert plain.agi_audio_host_path() == Path("/srv/agi")
    with pytest.raises(ValueError, match="absolute"):
        Settings(_env_file=None, agi_audio_dir="spool/agi")


def test_agi_listen_address_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICE_AGENT_AGI_HOST", "0.0.0.0")
    monkeypatch.setenv("VOICE_AGENT_AGI_PORT", "4600")
    settings = Settings(_env_file=None)
    assert (settings.agi_host, settings.agi_port) == ("0.0.0.0", 4600)
    assert Settings(_env_file=None, agi_port=4573).agi_port == 4573


def _context(name: str) -> list[str]:
    text = dialplan(TenantRegistry.load())  # what the dev Asterisk includes
    return text.split(f"\n[{name}]\n")[1].split("\n\n")[0].splitlines()


def test_dialplan_falls_back_to_agi_and_has_a_direct_agi_context() -> None:
    numbers = TenantRegistry.load().numbers()  # the tenant files' numbers, all routed
    stasis = {line.split("=>")[1].split(",")[0].strip(): line.split("Stasis(")[1].split(",")[1]
              .rstrip(")") for line in _context("voice-agent-ari")
              if line.startswith("exten =>") and "Stasis(" in line}
    assert stasis == numbers
    agi = {line.split("=>")[1].split(",")[0].strip(): line.split("AGI(")[1].rstrip(")")
           for line in _context("voice-agent-agi") if line.startswith("exten =>")}
    assert agi == {n: f"agi://127.0.0.1:4573/{t}" for n, t in numbers.items()}
    ari = _context("voice-agent-ari")
    fallbacks = [line for line in ari if "STASISSTATUS" in line]
    assert len(fallbacks) == 4
    assert all('"${STASISSTATUS}" = "FAILED"]?voice-agent-agi,${EXTEN},1)' in line
               for line in fallbacks)


# ------------------------------------------------------------- model stubs


class ScriptedStt:
    """Returns the next scripted transcript; ``gate`` holds it back (a slow model)."""

    name = "scripted"

    def __init__(self, texts: list[str]) -> None:
        self.texts = list(texts)
        self.calls: list[int] = []
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()
        self.cancelled = False

    async def transcribe(self, pcm16k: np.ndarray) -> Transcript:
        self.calls.append(len(pcm16k))
        self.started.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        text = self.texts.pop(0) if self.texts else ""
        return Transcript(text, "en", len(pcm16k) / 16000, 0.0)


class ToneTts:
    """0.3 s of tone for any text, in two chunks like a streaming model."""

    name = "tone"
    voice = "test"

    def __init__(self) -> None:
        self.said: list[str] = []

    async def stream(self, text: str) -> AsyncIterator[np.ndarray]:
        self.said.append(text)
        audio = sine(16000, 440, 0.3, amplitude=8000)
        yield audio[:2400]
        yield audio[2400:]


# ------------------------------------------------------------ fake Asterisk

Reply = list[str]
Hook = Callable[["FakeAsterisk", list[str]], Awaitable[Reply] | Reply]


class FakeAsterisk:
    """The Asterisk end of one FastAGI connection.

    ``hooks`` maps a verb (``"RECORD FILE"``, ``"STREAM FILE"``, ``"ANSWER"``...)
    to replies used in order, one per command of that verb; without a hook the
    command gets what Asterisk answers on a healthy call. After a hang-up every
    command but ``HANGUP`` gets a 511, like a dead channel.
    """

    def __init__(self, port: int, host_dir: Path, script: str = "techstore",
                 hooks: dict[str, list[Hook]] | None = None) -> None:
        self.port = port
        self.host_dir = host_dir
        self.script = script
        self.hooks = hooks or {}
        self.commands: list[str] = []
        self.played: list[tuple[str, int | None]] = []
        self.recorded: list[Path] = []
        self.dead = False
        self._writer: asyncio.StreamWriter | None = None

    async def call(self, timeout: float = 10.0) -> None:
        """Connect, send the environment, answer commands until the server closes."""
        reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.send(*env_lines(self.script), "")
        async with asyncio.timeout(timeout):
            while line := (await reader.readline()).decode():
                args = shlex.split(line)
                self.commands.append(line.rstrip("\n"))
                verb = " ".join(args[:2]) if args[0] in ("STREAM", "RECORD", "SET") else args[0]
                hooks = self.hooks.get(verb)
                if self.dead and verb != "HANGUP":
                    reply = ["511 Command Not Permitted on a dead channel or intercepted channel"]
                elif hooks:
                    result = hooks.pop(0)(self, args)
                    reply = await result if asyncio.iscoroutine(result) else result
                else:
                    reply = self.default(verb, args)
                self.send(*reply)
        self._writer.close()

    def send(self, *lines: str) -> None:
        assert self._writer is not None
        self._writer.write("".join(f"{line}\n" for line in lines).encode())

    def host_file(self, name: str) -> Path:
        return self.host_dir / f"{PurePosixPath(name).name}.wav"

    def default(self, verb: str, args: list[str]) -> Reply:
        if verb == "ANSWER":
            return ["200 result=0"]
        if verb.startswith("SET"):
            return ["200 result=1"]
        if verb == "STREAM FILE":
            return self.play(args)
        if verb == "RECORD FILE":
            return speak(self, args)
        if verb == "HANGUP":
            self.dead = True
            return ["200 result=1", "HANGUP"]
        return ["510 Invalid or unknown command"]

    def play(self, args: list[str]) -> Reply:
        name = args[2]
        rate = None
        if name.startswith("/"):
            with wave.open(str(self.host_file(name))) as wav:
                assert (wav.getsampwidth(), wav.getnchannels()) == (2, 1)
                rate = wav.getframerate()
                frames = wav.getnframes()
        else:
            frames = 8000  # a core sound such as ss-noservice
        self.played.append((name, rate))
        return [f"200 result=0 endpos={frames}"]

    def record(self, args: list[str], pcm8k: np.ndarray, ending: str = "0 (timeout)") -> Reply:
        assert args[3] == "wav" and args[6] == "0" and args[7].startswith("s="), args
        path = self.host_file(args[2])
        path.write_bytes(wav_bytes(pcm8k, 8000))
        self.recorded.append(path)
        return [f"200 result={ending} endpos={len(pcm8k)}"]


def speak(fake: FakeAsterisk, args: list[str]) -> Reply:
    """The caller says one second of something, then is silent."""
    return fake.record(args, sine(16000, 440, 1.0, amplitude=8000)[::2])


def hang_up_recording(fake: FakeAsterisk, args: list[str]) -> Reply:
    """The caller hangs up half a second into a turn: partial file, -1, then HANGUP."""
    fake.record(args, sine(16000, 440, 0.5, amplitude=8000)[::2])
    fake.dead = True
    return ["200 result=-1 (hangup) endpos=4000", "HANGUP"]


def hang_up_playing(fake: FakeAsterisk, args: list[str]) -> Reply:
    fake.play(args)
    fake.dead = True
    return ["200 result=-1 endpos=1200", "HANGUP"]


def press(digit: str) -> Hook:
    """The caller presses ``digit`` during a prompt or a recording."""
    def hook(fake: FakeAsterisk, args: list[str]) -> Reply:
        if args[0] == "STREAM":
            fake.play(args)
            return [f"200 result={ord(digit)} endpos=2000"]
        return fake.record(args, sine(16000, 440, 0.2, amplitude=8000)[::2],
                           ending=f"{ord(digit)} (dtmf)")
    return hook


def say_silence(fake: FakeAsterisk, args: list[str]) -> Reply:
    return fake.record(args, np.zeros(8000, np.int16))


# ----------------------------------------------------------------- fixtures

Harness = tuple[FastAgiServer, Path]


@pytest.fixture
def agi_server(tmp_path: Path) -> Callable[..., contextlib.AbstractAsyncContextManager[Harness]]:
    """``async with agi_server(stt, tts) as (server, host_dir)``: the real server on a free port."""

    @contextlib.asynccontextmanager
    async def start(stt: ScriptedStt, tts: ToneTts, **overrides: Any) -> AsyncIterator[Harness]:
        host_dir = tmp_path / "agi"
        settings = Settings(_env_file=None, agi_audio_host_dir=host_dir, data_dir=tmp_path,
                            agi_silence_seconds=1, **overrides)
        services = SpeechServices(TenantDatabases(tmp_path), stt, tts)  # type: ignore[arg-type]
        async with running_agi_server(settings, services=services, port=0) as server:
            yield server, host_dir

    return start


async def ended(server: FastAgiServer, count: int = 1) -> None:
    """Until ``count`` calls are in ``server.completed`` (bounded, not a measurement)."""
    try:
        await eventually(lambda: len(server.completed) >= count, interval=0.01,
                         what=f"{count} call(s) to end")
    except AssertionError as error:
        raise AssertionError(f"{error}; ended: {list(server.completed)}") from None


def verbs(fake: FakeAsterisk) -> list[str]:
    return [" ".join(c.split()[:2]) if c.startswith(("STREAM", "RECORD", "SET")) else c
            for c in fake.commands]


# -------------------------------------------------------------------- calls


async def test_one_full_turn_answers_the_question_and_times_every_step(agi_server) -> None:
    stt, tts = ScriptedStt([ORDER_QUESTION]), ToneTts()
    async with agi_server(stt, tts) as (server, host_dir):
        fake = FakeAsterisk(server.port, host_dir,
                            hooks={"RECORD FILE": [speak, hang_up_recording]})
        await fake.call()
        await ended(server)

    assert fake.commands[0] == "ANSWER"
    assert fake.commands[1] == f"SET VARIABLE {TENANT_VARIABLE} techstore"
    assert verbs(fake)[2:] == ["STREAM FILE", "RECORD FILE", "STREAM FILE", "RECORD FILE"]
    assert "HANGUP" not in fake.commands  # the caller hung up: nothing more to send
    assert [rate for _, rate in fake.played] == [8000, 8000]
    assert tts.said[0].startswith("Hi, this is TechStore")
    assert "shipped" in tts.said[1]
    assert len(stt.calls) == 1 and stt.calls[0] == pytest.approx(16000, abs=100)

    record = server.completed[-1]
    assert record.tenant == "techstore" and record.caller == "5551234"
    assert record.channel_name == "PJSIP/test-caller-00000001"
    assert record.end_reason == "caller hung up"
    assert record.states == [CallState.STARTING, CallState.GREETING, CallState.LISTENING,
                             CallState.CLOSED]
    (turn,) = record.turns
    assert turn["heard"] == ORDER_QUESTION and "shipped" in turn["reply"]
    assert turn["intent"] == "order_status"
    assert (turn["speech_end"] <= turn["record_end"] <= turn["stt_final"] <= turn["reply_ready"]
            <= turn["first_audio"] <= turn["played"])
    assert turn["record_end"] - turn["speech_end"] == pytest.approx(1.0)  # s=1 silence
    assert not list(host_dir.iterdir()), "per-turn files left behind"
    assert not server.sessions


async def test_hang_up_during_record_closes_the_session_and_removes_the_files(
        agi_server) -> None:
    stt, tts = ScriptedStt([]), ToneTts()
    async with agi_server(stt, tts) as (server, host_dir):
        fake = FakeAsterisk(server.port, host_dir, hooks={"RECORD FILE": [hang_up_recording]})
        await fake.call()
        await ended(server)
    assert fake.recorded and not fake.recorded[0].exists()  # the partial recording too
    assert not list(host_dir.iterdir())
    assert verbs(fake)[-1] == "RECORD FILE" and not stt.calls
    assert server.completed[-1].end_reason == "caller hung up"
    assert server.completed[-1].states[-1] == CallState.CLOSED


async def test_hang_up_during_stream_file_closes_the_session_and_removes_the_files(
        agi_server) -> None:
    stt, tts = ScriptedStt([]), ToneTts()
    async with agi_server(stt, tts) as (server, host_dir):
        fake = FakeAsterisk(server.port, host_dir, hooks={"STREAM FILE": [hang_up_playing]})
        await fake.call()
        await ended(server)
    assert verbs(fake) == ["ANSWER", "SET VARIABLE", "STREAM FILE"]
    assert fake.played[0][1] == 8000  # the greeting file existed while it played...
    assert not list(host_dir.iterdir())  # ...and is gone now
    assert server.completed[-1].end_reason == "caller hung up"
    assert server.completed[-1].states == [CallState.STARTING, CallState.GREETING,
                                           CallState.CLOSED]


async def test_hang_up_while_the_agent_thinks_cancels_the_work_at_once(agi_server) -> None:
    """HANGUP arrives between commands (during STT): the session does not wait for the model."""
    stt, tts = ScriptedStt([ORDER_QUESTION]), ToneTts()
    stt.gate = asyncio.Event()  # never opened: a model that would take forever

    async def hang_up_while_transcribing(fake: FakeAsterisk, args: list[str]) -> Reply:
        reply = fake.record(args, sine(16000, 440, 1.0, amplitude=8000)[::2])
        fake.send(*reply)
        await stt.started.wait()
        fake.dead = True
        return ["HANGUP"]

    async with agi_server(stt, tts) as (server, host_dir):
        fake = FakeAsterisk(server.port, host_dir,
                            hooks={"RECORD FILE": [hang_up_while_transcribing]})
        started = time.monotonic()
        await fake.call()
        await ended(server)
        assert time.monotonic() - started < 3
    assert stt.cancelled
    assert server.completed[-1].end_reason == "caller hung up"
    assert not list(host_dir.iterdir())


async def test_511_from_a_dead_channel_ends_the_session(agi_server) -> None:
    def dead(fake: FakeAsterisk, args: list[str]) -> Reply:
        return ["511 Command Not Permitted on a dead channel or intercepted channel"]

    async with agi_server(ScriptedStt([]), ToneTts()) as (server, host_dir):
        fake = FakeAsterisk(server.port, host_dir, hooks={"STREAM FILE": [dead]})
        await fake.call()
        await ended(server)
    assert server.completed[-1].end_reason == "caller hung up"
    assert fake.commands[-1] == "HANGUP"  # no HANGUP line came: make sure the call ends
    assert not list(host_dir.iterdir())


@pytest.mark.parametrize("reply", [
    ["510 Invalid or unknown command"],
    ["520-Invalid command syntax.  Proper usage follows:", " Usage: SET VARIABLE <n> <v>",
     "520 End of proper usage."],
])
async def test_rejected_command_ends_the_call_with_an_error(agi_server, reply: Reply) -> None:
    async with agi_server(ScriptedStt([]), ToneTts()) as (server, host_dir):
        fake = FakeAsterisk(server.port, host_dir, hooks={"SET VARIABLE": [lambda f, a: reply]})
        await fake.call()
        await ended(server)
    record = server.completed[-1]
    assert record.end_reason.startswith("error: AGI command 'SET VARIABLE")
    assert reply[-1] in record.end_reason
    assert fake.commands[-1] == "HANGUP"  # responses stayed in step after the 520 block


async def test_a_line_that_is_no_response_fails_its_command_only(agi_server) -> None:
    async with agi_server(ScriptedStt([]), ToneTts()) as (server, host_dir):
        fake = FakeAsterisk(server.port, host_dir, hooks={"ANSWER": [lambda f, a: ["OK"]]})
        await fake.call()
        await ended(server)
    assert server.completed[-1].end_reason == "error: not an AGI response: 'OK'"
    assert fake.commands == ["ANSWER", "HANGUP"]  # still in step: HANGUP got its own reply


async def test_unknown_tenant_hears_noservice_and_is_hung_up(
        agi_server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    async with agi_server(ScriptedStt([]), ToneTts()) as (server, host_dir):
        fake = FakeAsterisk(server.port, host_dir, script="acme")
        await fake.call()
        assert fake.commands == ["ANSWER", 'STREAM FILE ss-noservice ""', "HANGUP"]
        assert not server.sessions and not server.completed
    (rejected,) = server.rejected
    assert rejected.prompt == "ss-noservice" and rejected.prompt_state == "done"
    assert "'acme'" in rejected.reason
    assert "configured tenants: edulearn, healthplus, techstore" in caplog.text


async def test_hash_repeats_the_last_reply(agi_server) -> None:
    stt, tts = ScriptedStt([]), ToneTts()
    async with agi_server(stt, tts) as (server, host_dir):
        fake = FakeAsterisk(server.port, host_dir, hooks={
            "STREAM FILE": [press("#")], "RECORD FILE": [hang_up_recording]})
        await fake.call()
        await ended(server)
    assert verbs(fake)[2:] == ["STREAM FILE", "STREAM FILE", "RECORD FILE"]
    greeting = tts.said[0]
    assert tts.said == [greeting, greeting]  # said again, uncached, like the ARI agent
    (turn,) = server.completed[-1].turns
    assert turn["dtmf"] == "#" and turn["intent"] == "repeat" and turn["reply"] == greeting


async def test_a_full_audio_directory_gets_an_apology_and_the_operator(
    agi_server, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No room for the greeting: Asterisk's own sorry sound, then the tenant's operator."""
    real = os.statvfs

    def full(path: os.PathLike[str] | str) -> os.statvfs_result:
        stat = real(path)
        return os.statvfs_result((*stat[:4], 0, *stat[5:]))  # f_bavail = 0

    stt, tts = ScriptedStt([]), ToneTts()
    async with agi_server(stt, tts) as (server, host_dir):
        monkeypatch.setattr(audio_files.os, "statvfs", full)
        fake = FakeAsterisk(server.port, host_dir, script="healthplus")
        await fake.call()
        await ended(server)
    assert fake.commands[2:] == ['STREAM FILE im-sorry ""', "SET CONTEXT voice-agent-operators",
                                 "SET EXTENSION 9200", "SET PRIORITY 1"]
    record = server.completed[-1]
    assert record.end_reason == "audio directory full; transferred to 9200@voice-agent-operators"
    (error,) = record.errors
    assert error["stage"] == "audio" and "is full" in error["error"]
    assert not list(host_dir.iterdir())


async def test_zero_hands_the_caller_to_the_tenant_operator(agi_server) -> None:
    async with agi_server(ScriptedStt([]), ToneTts()) as (server, host_dir):
        fake = FakeAsterisk(server.port, host_dir, script="healthplus",
                            hooks={"RECORD FILE": [press("0")]})
        await fake.call()
        await ended(server)
    assert fake.commands[-3:] == ["SET CONTEXT voice-agent-operators", "SET EXTENSION 9200",
                                  "SET PRIORITY 1"]
    assert "HANGUP" not in fake.commands  # the socket closes; the dialplan goes on
    record = server.completed[-1]
    assert record.end_reason == "transferred to 9200@voice-agent-operators"
    assert record.turns[-1]["intent"] == "operator"
    assert not list(host_dir.iterdir())


async def test_silence_is_not_transcribed(agi_server) -> None:
    stt, tts = ScriptedStt([]), ToneTts()
    async with agi_server(stt, tts) as (server, host_dir):
        fake = FakeAsterisk(server.port, host_dir,
                            hooks={"RECORD FILE": [say_silence, hang_up_recording]})
        await fake.call()
        await ended(server)
    assert verbs(fake)[2:] == ["STREAM FILE", "RECORD FILE", "RECORD FILE"]
    assert not stt.calls and not server.completed[-1].turns


async def test_a_silent_caller_is_asked_again_then_the_agent_says_goodbye(agi_server) -> None:
    stt, tts = ScriptedStt([]), ToneTts()
    async with agi_server(stt, tts) as (server, host_dir):
        fake = FakeAsterisk(server.port, host_dir, hooks={"RECORD FILE": [say_silence] * 12})
        await fake.call()
        await ended(server)
    record = server.completed[-1]
    assert record.end_reason == "caller silent" and not stt.calls
    asked = [turn["reply"] for turn in record.turns]
    assert [text.split("?")[0].split(",")[0] for text in asked] == [
        "Are you still there", "Are you still there", "I haven't heard anything"]
    # greeting, then each question after four silent recordings; the agent hangs up
    assert verbs(fake)[2:] == ["STREAM FILE", *(["RECORD FILE"] * 4 + ["STREAM FILE"]) * 3,
                               "HANGUP"]


async def test_goodbye_ends_the_call_from_the_agent_side(agi_server) -> None:
    async with agi_server(ScriptedStt(["thanks, goodbye"]), ToneTts()) as (server, host_dir):
        fake = FakeAsterisk(server.port, host_dir, script="edulearn")
        await fake.call()
        await ended(server)
    assert verbs(fake)[-2:] == ["STREAM FILE", "HANGUP"]
    assert server.completed[-1].end_reason == "agent ended the call"


async def test_shutdown_refuses_new_calls_drains_then_ends_live_ones(agi_server) -> None:
    stt, tts = ScriptedStt([ORDER_QUESTION]), ToneTts()
    stt.gate = asyncio.Event()
    async with agi_server(stt, tts) as (server, host_dir):
        live = FakeAsterisk(server.port, host_dir)
        live_call = asyncio.create_task(live.call())
        await asyncio.wait_for(stt.started.wait(), 5)
        stopping = asyncio.create_task(server.shutdown(drain_seconds=0.3))
        await asyncio.sleep(0.05)
        late = FakeAsterisk(server.port, host_dir, script="edulearn")
        await late.call()
        assert late.commands == ["ANSWER", 'STREAM FILE all-circuits-busy-now ""', "HANGUP"]
        assert not live_call.done()  # still draining
        await stopping
        await live_call
    assert stt.cancelled
    assert server.completed[-1].end_reason == "service shutdown"
    assert live.commands[-1] == "HANGUP"
    assert not list(host_dir.iterdir())


async def test_admission_limit_turns_callers_away_with_the_busy_prompt(agi_server) -> None:
    stt = ScriptedStt([ORDER_QUESTION])
    stt.gate = asyncio.Event()
    async with agi_server(stt, ToneTts(), max_calls=1) as (server, host_dir):
        first = FakeAsterisk(server.port, host_dir,
                             hooks={"RECORD FILE": [speak, hang_up_recording]})
        first_call = asyncio.create_task(first.call())
        await asyncio.wait_for(stt.started.wait(), 5)
        second = FakeAsterisk(server.port, host_dir)
        await second.call()
        assert second.commands == ["ANSWER", 'STREAM FILE all-circuits-busy-now ""', "HANGUP"]
        assert server.rejected[-1].reason == "admission limit reached"
        stt.gate.set()
        await first_call
        await ended(server)
    assert server.completed[-1].turns[0]["heard"] == ORDER_QUESTION  # the live call went on


async def test_garbage_instead_of_an_environment_is_dropped(agi_server) -> None:
    async with agi_server(ScriptedStt([]), ToneTts()) as (server, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing sent
        writer.close()
        assert not server.sessions and not server.rejected



async def test_a_busy_port_or_a_misplaced_audio_dir_is_a_clear_error(tmp_path: Path) -> None:
    services = SpeechServices(TenantDatabases(tmp_path), ScriptedStt([]),
                              ToneTts())  # type: ignore[arg-type]
    nowhere = Settings(_env_file=None, asterisk_root=tmp_path / "no-such-root")
    with pytest.raises(AgiError, match="VOICE_AGENT_AGI_AUDIO_HOST_DIR"):
        async with running_agi_server(nowhere, services=services, port=0):
            pass
    settings = Settings(_env_file=None, agi_audio_host_dir=tmp_path / "agi")
    async with running_agi_server(settings, services=services, port=0) as first:
        with pytest.raises(AgiError, match=f"cannot serve FastAGI on 127.0.0.1:{first.port}"):
            async with running_agi_server(settings, services=services, port=first.port):
                pass


async def test_files_left_by_a_killed_run_are_removed_at_start_others_kept(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    services = SpeechServices(TenantDatabases(tmp_path), ScriptedStt([]),
                              ToneTts())  # type: ignore[arg-type]
    host_dir = tmp_path / "agi"
    host_dir.mkdir()
    left = [host_dir / "31c3706bc71f-003-say.wav", host_dir / "31c3706bc71f-004-rec.wav"]
    foreign = host_dir / "operator-notes.wav"
    for path in [*left, foreign]:
        path.write_bytes(b"RIFF")
    settings = Settings(_env_file=None, agi_audio_host_dir=host_dir)
    async with running_agi_server(settings, services=services, port=0):
        assert sorted(host_dir.iterdir()) == [foreign]
    assert "removed 2 call audio file(s)" in caplog.text


class FlakyStt(ScriptedStt):
    """Fails its first transcription the way a dead STT server does."""

    async def transcribe(self, pcm16k: np.ndarray) -> Transcript:
        if not self.calls:
            self.calls.append(len(pcm16k))
            raise ProviderConnectionError("cannot reach STT server at tcp://stt:10300")
        return await super().transcribe(pcm16k)


async def test_a_failed_provider_is_apologised_for_and_the_call_goes_on(agi_server) -> None:
    stt, tts = FlakyStt([ORDER_QUESTION]), ToneTts()
    async with agi_server(stt, tts) as (server, host_dir):
        fake = FakeAsterisk(server.port, host_dir,
                            hooks={"RECORD FILE": [speak, speak, hang_up_recording]})
        await fake.call()
        await ended(server)
    assert tts.said[1] == APOLOGY and "shipped" in tts.said[2]
    record = server.completed[-1]
    (error,) = record.errors
    assert error["stage"] == "stt" and error["handled_by"] == "apology"
    assert "cannot reach STT server" in error["error"]
    assert record.turns[-1]["heard"] == ORDER_QUESTION
    assert record.end_reason == "caller hung up"
