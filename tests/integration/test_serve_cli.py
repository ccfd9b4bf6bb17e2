"""The production entry point: `voice-agent serve` as a process, stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from pathlib import Path

import httpx

from tests.helpers import eventually
from voice_agent.ari.asterisk_ari import AriClient
from voice_agent.config import Settings
from voice_agent.dev.local_asterisk import LocalAsterisk
from voice_agent.dev.model_servers import free_tcp_port
from voice_agent.dev.sim.phone import SimPhone


async def _app_registered(settings: Settings) -> bool:
    async with httpx.AsyncClient(auth=(settings.ari_user, settings.ari_secret())) as http:
        url = f"{settings.ari_url}/ari/applications/{settings.app_name}"
        return (await http.get(url)).status_code == 200


async def test_serve_answers_and_drains_on_sigterm(
    local_asterisk: LocalAsterisk, settings: Settings, inspector: AriClient, tmp_path: Path
) -> None:
    """Also the systemd protocol: READY=1 once it can take calls, STOPPING=1 on SIGTERM."""
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # plays systemd
    manager.bind(str(tmp_path / "notify"))
    manager.setblocking(False)
    loop = asyncio.get_running_loop()
    web_port = free_tcp_port()
    env = {**os.environ, "VOICE_AGENT_LOG_LEVEL": "INFO", "NOTIFY_SOCKET": str(tmp_path / "notify"),
           "VOICE_AGENT_WEB_PORT": str(web_port), "VOICE_AGENT_LOG_FORMAT": "json"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voice_agent.cli", "serve", "--agent", "echo",
        "--drain-seconds", "1", env=env, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(30):
            assert (await loop.sock_recv(manager, 256)).startswith(b"READY=1")
        assert await _app_registered(settings)
        async with SimPhone(settings.ari_url, settings.ari_user, settings.ari_secret()) as phone:
            call = await phone.dial("18005559999", via="sip")
            assert call.tenant == "edulearn"
            async with httpx.AsyncClient() as http:  # the live call, as Prometheus sees it
                scraped = (await http.get(f"http://127.0.0.1:{web_port}/metrics")).text
            assert re.search(r'voice_agent_calls_live\{entry="ari",state="\w+",'
                             r'tenant="edulearn"\} 1\.0', scraped), scraped
            assert "process_resident_memory_bytes" in scraped
            process.send_signal(signal.SIGTERM)
            # Drain: the live call gets 1 s, then the agent hangs it up and exits 0.
            assert await call.wait_ended(15), "the agent did not end the call on shutdown"
            async with asyncio.timeout(20):
                assert await process.wait() == 0
        assert manager.recv(256) == b"STOPPING=1"
        log = (await process.stderr.read()).decode() if process.stderr else ""
        lines = [json.loads(line) for line in log.splitlines()]  # every line is JSON
        messages = [line["message"] for line in lines]
        assert "ready: waiting for calls (Ctrl-C to stop)" in messages
        assert "stopping: 1 live call(s)" in messages
        in_call = [line for line in lines if line.get("call_id")]
        assert in_call and all(line["tenant"] == "edulearn" for line in in_call), in_call
        assert not await _app_registered(settings)
        await eventually(lambda: _no_channels(inspector), what="no channels left")
    finally:
        manager.close()
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _no_channels(inspector: AriClient) -> bool:
    return not await inspector.list_channels()


async def _log_line(process: asyncio.subprocess.Process, wanted: str) -> dict[str, object]:
    """The next JSON log line of ``process`` whose message starts with ``wanted``."""
    assert process.stderr is not None
    async with asyncio.timeout(30):
        while line := await process.stderr.readline():
            entry = json.loads(line)
            if str(entry["message"]).startswith(wanted):
                return entry
    raise AssertionError(f"the log ended without {wanted!r}")


async def test_serve_refuses_broken_tenants_and_reloads_them_on_sighup(
    local_asterisk: LocalAsterisk, tmp_path: Path
) -> None:
    import shutil

    from voice_agent.tenants import TENANTS_DIR

    tenants = tmp_path / "tenants"
    shutil.copytree(TENANTS_DIR, tenants, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    intents = tenants / "edulearn" / "intents.yaml"
    good = intents.read_text()
    intents.write_text(good.replace("sql: SELECT title FROM courses", "sql: SELECT title FROM "
                                    "lessons"))
    env = {**os.environ, "VOICE_AGENT_TENANTS_DIR": str(tenants), "VOICE_AGENT_WEB_PORT": "0",
           "VOICE_AGENT_LOG_FORMAT": "json", "VOICE_AGENT_LOG_LEVEL": "INFO"}
    command = [sys.executable, "-m", "voice_agent.cli", "serve", "--agent", "echo"]
    refused = await asyncio.create_subprocess_exec(*command, env=env,
                                                   stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(refused.communicate(), 30)
    assert refused.returncode == 2
    assert re.search(rf"{re.escape(str(intents))}:\d+: intent list_courses: SQL does not run "
                     r"on this tenant's tables: no such table: lessons", stderr.decode())
    intents.write_text(good)
    process = await asyncio.create_subprocess_exec(*command, env=env,
                                                   stderr=asyncio.subprocess.PIPE)
    try:
        await _log_line(process, "ready: waiting for calls")
        intents.write_text(good.replace("{{ course.title }} runs", "{{ cours.title }} runs", 1))
        process.send_signal(signal.SIGHUP)
        kept = await _log_line(process, "tenants NOT reloaded")
        assert "names 'cours'" in str(kept["message"])
        intents.write_text(good)
        (tenants / "acme.yaml").write_text("name: acme\ndisplay_name: ACME\n"
                                           "greeting_prompt: hello-world\n")
        process.send_signal(signal.SIGHUP)
        taken = await _log_line(process, "tenants reloaded")
        assert "acme" in str(taken["message"])
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
