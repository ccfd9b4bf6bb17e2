"""Secrets and identity data stay where they belong, on a real call through `serve`.

The ARI password, the model servers' API keys and the dashboard's token (made
by serve, as when unset) must never appear in the log
(at DEBUG, where libraries print their requests), in the call history, or in
an error; a healthplus caller's name and birth date must be redacted before
they reach the history database, checked in the file's bytes, not through SQL.
The model servers here are dead on purpose: their errors and the fallback to
the embedded models are the paths where a key would leak.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.helpers import closed_port_url, eventually
from tests.integration.serve_process import serve_process
from voice_agent.ari.asterisk_ari import AriClient
from voice_agent.config import Settings
from voice_agent.dev.local_asterisk import LocalAsterisk
from voice_agent.dev.model_servers import free_tcp_port
from voice_agent.dev.sim.conversation import ScriptedCaller, Step
from voice_agent.dev.sim.phone import SimPhone
from voice_agent.providers.stt import WhisperStt

KEYS = {"LLM": "sk-llm-7f3a91c2e5", "STT": "sk-stt-0b8d44e1a7", "TTS": "sk-tts-c6e29f5d03"}
NAME = "Robert Jones"


async def test_no_secret_or_identity_reaches_logs_history_or_errors(
    local_asterisk: LocalAsterisk, settings: Settings, inspector: AriClient,
    whisper: WhisperStt, tmp_path: Path,
) -> None:
    dead = closed_port_url()
    # no VOICE_AGENT_WEB_TOKEN: serve makes the dashboard's token, and must not log it
    env = {**os.environ, "VOICE_AGENT_LOG_LEVEL": "DEBUG", "VOICE_AGENT_DATA_DIR": str(tmp_path),
           "VOICE_AGENT_WEB_PORT": str(free_tcp_port()), "VOICE_AGENT_LLM_MODEL": "any"}
    env.pop("VOICE_AGENT_WEB_TOKEN", None)
    for kind, key in KEYS.items():
        env |= {f"VOICE_AGENT_{kind}_URL": dead, f"VOICE_AGENT_{kind}_API_KEY": key}
    async with serve_process(env, "--agent", "conversation", "--drain-seconds", "1") as serve:
        await eventually(lambda: serve.logged("ready: waiting for calls"), timeout=180,
                         what="serve ready")
        async with SimPhone(settings.ari_url, settings.ari_user, settings.ari_secret()) as phone:
            call = await phone.dial("18005555678", via="sip", audio=True)
            async with ScriptedCaller(call, whisper) as caller:
                await caller.greeting()
                await caller.step(Step(f"My name is {NAME} and my date of birth is "
                                       "the fourth of July nineteen eighty."))
                await caller.finish()
            await call.hangup()
        await eventually(lambda: serve.logged(" closed after "), timeout=20,
                         what="the call's end logged")
        assert await serve.stop() == 0
    log = bytes(serve.output)
    assert b"DEBUG" in log, "the log ran at DEBUG (where libraries print requests)"
    where = dead.removeprefix("http://").removesuffix("/v1").encode()
    assert where in log, "the dead servers' errors were logged (the leak paths ran)"
    stored = _history_bytes(tmp_path)
    assert b"healthplus" in stored, "the call was stored"
    token = (tmp_path / "web-token").read_text().strip()
    assert serve.logged(f"made a dashboard token; it is in {tmp_path / 'web-token'}")
    secrets = [settings.ari_secret(), *KEYS.values(), token]
    for secret in secrets:
        assert secret.encode() not in log, f"{secret!r} is in the log"
        assert secret.encode() not in stored, f"{secret!r} is in the call history"
    # identity: the agent heard the caller (the turn is stored), and neither the name
    # nor the birth date is in the database file's bytes
    assert b"[name]" in stored or b"[dob]" in stored, "the identity turn was stored redacted"
    for word in (b"Robert", b"Jones", b"July", b"eighty", b"1980"):
        assert word.lower() not in stored.lower(), f"{word!r} reached the history file"
        assert word.lower() not in log.lower(), f"{word!r} reached the log"
    await eventually(lambda: _no_channels(inspector), what="no channels left")


def _history_bytes(data_dir: Path) -> bytes:
    """The SQLite history file and its journal/WAL, as bytes on disk."""
    return b"".join(path.read_bytes() for path in data_dir.glob("history.sqlite3*"))


async def _no_channels(inspector: AriClient) -> bool:
    return not await inspector.list_channels()
