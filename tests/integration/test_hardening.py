"""A call works with `serve` locked down the way deploy/voice-agent.service locks it.

There is no systemd to run the unit here (containers have no PID 1 systemd), so
the test applies the unit's restrictions that can break the program itself,
with the kernel features systemd uses for them:

- ``DynamicUser``: a uid with no passwd entry, no groups, no capabilities;
- ``NoNewPrivileges``: ``setpriv --no-new-privs``;
- ``ProtectSystem=strict`` + ``StateDirectory``: a private mount namespace where
  ``/`` is read-only and only the state directory is writable;
- ``PrivateTmp``: an empty tmpfs on ``/tmp``; ``ProtectHome=read-only`` comes with the
  read-only ``/``;
- ``MemoryMax``: a cgroup memory limit of the unit's size.

``RestrictAddressFamilies`` and the system-call filter are seccomp rules that
``tests/unit/test_systemd_unit.py`` checks through ``systemd-analyze``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.helpers import eventually, unit_service_settings
from tests.integration.serve_process import serve_process
from voice_agent.ari.asterisk_ari import AriClient
from voice_agent.config import Settings
from voice_agent.dev.local_asterisk import LocalAsterisk
from voice_agent.dev.model_servers import free_tcp_port
from voice_agent.dev.sim.conversation import ScriptedCaller, Step, words_heard
from voice_agent.dev.sim.phone import SimPhone
from voice_agent.providers.stt import WhisperStt
from voice_agent.tenants import TenantRegistry

DYNAMIC_UID = 61184  # systemd's DynamicUser range starts at 61184
MEMORY_CGROUP = Path("/sys/fs/cgroup/memory")
PROJECT = Path(__file__).resolve().parents[2]

# Runs as root in a new mount namespace, then drops to the dynamic user.
SANDBOX = r"""
set -eu
state="$1" cgroup="$2" memory="$3" project="$4" hold="$5"; shift 5
if [ -n "$cgroup" ]; then
  mkdir -p "$cgroup"
  echo "$memory" > "$cgroup/memory.limit_in_bytes"
  echo $$ > "$cgroup/cgroup.procs"
fi
mount --make-rprivate /
mount --bind "$state" "$state"            # StateDirectory: the one writable place
case "$project" in /tmp/*) mount --bind "$project" "$hold";; esac
mount -o remount,bind,ro /                # ProtectSystem=strict
mount -t tmpfs -o mode=1777 tmpfs /tmp    # PrivateTmp
case "$project" in /tmp/*)                # a checkout under /tmp (a CI clone) stays
  mkdir -p "$project"; mount --bind "$hold" "$project"; mount -o remount,bind,ro "$project";;
esac
exec setpriv --reuid="$UID_" --regid="$UID_" --clear-groups --no-new-privs \
  --inh-caps=-all --bounding-set=-all "$@"
"""


def _proc_status(pid: int) -> str:
    return Path(f"/proc/{pid}/status").read_text()


def _bytes(size: str) -> int:
    return int(size[:-1]) * 1024 ** " KMG".index(size[-1])


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """The state directory, outside /tmp (the sandbox mounts its own /tmp)."""
    path = Path(tempfile.mkdtemp(prefix="va-state-", dir="/var/tmp"))
    os.chown(path, DYNAMIC_UID, DYNAMIC_UID)
    path.chmod(0o700)
    yield path
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(path.parent / f"{path.name}-project", ignore_errors=True)


async def test_a_call_works_under_the_units_restrictions(
    local_asterisk: LocalAsterisk, settings: Settings, inspector: AriClient,
    whisper: WhisperStt, state_dir: Path,
) -> None:
    unit = unit_service_settings()
    assert unit["ProtectSystem"] == ["strict"] and unit["NoNewPrivileges"] == ["yes"]
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # plays systemd
    notify.bind(str(state_dir / "notify"))
    notify.setblocking(False)
    os.chown(state_dir / "notify", DYNAMIC_UID, DYNAMIC_UID)
    cgroup = (MEMORY_CGROUP / f"va-sandbox-{os.getpid()}") if os.access(
        MEMORY_CGROUP, os.W_OK) else None
    env = {"PATH": os.environ["PATH"], "HOME": "/", "UID_": str(DYNAMIC_UID),
           "VOICE_AGENT_DATA_DIR": str(state_dir), "NOTIFY_SOCKET": str(state_dir / "notify"),
           "VOICE_AGENT_WEB_PORT": str(free_tcp_port()), "VOICE_AGENT_LOG_LEVEL": "INFO",
           "VOICE_AGENT_MEDIA_TRANSPORT": "rtp"}
    # the unit runs the program from /opt; a checkout under /tmp (a CI clone) is mounted
    # back over the private /tmp, read-only, through a mount point outside it
    wrapper = ("unshare", "--mount", "sh", "-c", SANDBOX, "sandbox", str(state_dir),
               str(cgroup or ""), str(_bytes(unit["MemoryMax"][0])), str(PROJECT),
               str(state_dir.parent / f"{state_dir.name}-project"))
    (state_dir.parent / f"{state_dir.name}-project").mkdir()
    loop = asyncio.get_running_loop()
    tenant = TenantRegistry.load().resolve(["techstore"])
    try:
        async with serve_process(env, "--agent", "conversation", "--drain-seconds", "1",
                                 wrapper=wrapper) as serve:
            ready = asyncio.ensure_future(loop.sock_recv(notify, 256))
            exited = asyncio.ensure_future(serve.process.wait())
            await asyncio.wait([ready, exited], timeout=100,
                               return_when=asyncio.FIRST_COMPLETED)
            exited.cancel()
            assert ready.done() and ready.result().startswith(b"READY=1"), bytes(serve.output)
            agent = psutil.Process(serve.process.pid)
            assert agent.uids().real == DYNAMIC_UID and agent.gids().real == DYNAMIC_UID
            status = _proc_status(agent.pid)
            assert "NoNewPrivs:\t1" in status and "CapEff:\t0000000000000000" in status
            # exposure: every socket it listens on (metrics, RTP) is on loopback
            listening = [c.laddr for c in agent.net_connections("inet")
                         if c.status in (psutil.CONN_LISTEN, psutil.CONN_NONE)]
            assert len(listening) >= 2 and {a.ip for a in listening} == {"127.0.0.1"}, listening
            async with SimPhone(settings.ari_url, settings.ari_user,
                                settings.ari_secret()) as phone:
                call = await phone.dial("18005551234", via="sip", audio=True)
                async with ScriptedCaller(call, whisper) as caller:
                    greeting = await caller.greeting()
                    assert words_heard(tenant.greeting, greeting.heard) >= 0.5, greeting
                    await caller.step(Step("Where is my order one two three four five?"))
                    [_, answer] = await caller.finish()
                await call.hangup()
            assert "ship" in answer.heard.lower(), (answer, bytes(serve.output[-3000:]))
            assert await serve.stop() == 0, bytes(serve.output[-3000:])
        # it wrote its history where the unit lets it, as its own user
        history = state_dir / "history.sqlite3"
        assert history.stat().st_uid == DYNAMIC_UID
        assert b"Read-only file system" not in serve.output, bytes(serve.output[-3000:])
        await eventually(lambda: _no_channels(inspector), what="no channels left")
    finally:
        notify.close()
        if cgroup is not None and cgroup.exists():
            cgroup.rmdir()


async def _no_channels(inspector: AriClient) -> bool:
    return not await inspector.list_channels()
