"""A real Asterisk 22 for development, demos and CI, in a Debian sid chroot.

Debian 12 ships no Asterisk, and sid's Asterisk 22 needs sid's glibc, so we
build a small sid root filesystem with ``mmdebstrap`` (≈40 s, ≈370 MB) and run
Asterisk inside it with ``chroot``. Production sites do not use this: they
point ``voice-agent serve`` at their own Asterisk and copy our config snippets.

Every step is idempotent: ``up`` skips provisioning when the root exists,
rewrites our configs, starts Asterisk only when it is not running (reloading
it when a config changed), and returns once ARI answers.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from voice_agent.tenants import TenantRegistry
from voice_agent.tenants.dialplan import dialplan

CONFIG_DIR = Path(__file__).parent / "config"
#: The generated dialplan extensions.conf includes (``voice-agent tenants dialplan``).
TENANTS_CONF = "voice-agent-tenants.conf"
HOST_COMMANDS = {"mmdebstrap": "mmdebstrap", "sipp": "sip-tester", "sox": "sox",
                 "espeak-ng": "espeak-ng"}
DEFAULT_MIRROR = "http://deb.debian.org/debian"

Progress = Callable[[str], None]


class LocalAsteriskError(RuntimeError):
    """Provisioning or running the local Asterisk failed; the message says how to fix it."""


@dataclass
class AsteriskStatus:
    running: bool
    pid: int | None
    version: str | None
    ari_reachable: bool
    channels: int | None
    detail: str = ""


def host_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt already uses (works behind local proxies)."""
    candidates = sorted(sources_dir.glob("sources.list.d/*")) + [sources_dir / "sources.list"]
    for path in candidates:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for match in re.finditer(r"(?:URIs:|deb)\s+(?:\[[^\]]*\]\s+)?(\S+/debian)/?\s", text):
            return match.group(1)
    return DEFAULT_MIRROR


class LocalAsterisk:
    """Provision, configure, start, stop and query the chrooted Asterisk."""

    def __init__(
        self,
        root: Path,
        *,
        ari_url: str,
        ari_user: str,
        ari_password: str,
        mirror: str = "",
        progress: Progress = print,
    ) -> None:
        self.root = root
        self.ari_url = ari_url
        self._auth = (ari_user, ari_password)
        self.mirror = mirror or host_mirror()
        self.progress = progress
        self.pid_file = root.parent / "asterisk.pid"
        self.log_file = root.parent / "asterisk.log"

    # ------------------------------------------------------------ lifecycle
    def up(self, timeout: float = 60.0) -> AsteriskStatus:
        """Make sure Asterisk runs with our configs and ARI answers."""
        self._require_root()
        self.ensure_host_tools()
        self.provision()
        changed = self.install_configs()
        if self.pid() is None:
            self.start(timeout)
        elif changed:
            self.progress("configs changed: reloading Asterisk")
            self.cli("core reload")
            self._wait_for_ari(timeout)
        else:
            self.progress("Asterisk already running with current configs")
            self._wait_for_ari(timeout)
        status = self.status()
        self.progress(f"Asterisk {status.version} up (pid {status.pid}), ARI at {self.ari_url}")
        return status

    def ensure_host_tools(self) -> None:
        """Install the host packages we drive (mmdebstrap, sipp, sox, espeak-ng) if missing."""
        missing = sorted({pkg for cmd, pkg in HOST_COMMANDS.items() if not shutil.which(cmd)})
        if not missing:
            return
        self.progress(f"installing host packages: {' '.join(missing)} (apt-get)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
            result = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if result.returncode != 0:
                raise LocalAsteriskError(
                    f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr[-2000:]}"
                )

    def provision(self) -> None:
        """Build the sid root filesystem with Asterisk 22 unless it already exists."""
        if (self.root / "usr/sbin/asterisk").exists():
            return
        self.progress(f"provisioning Asterisk into {self.root} from {self.mirror} "
                      "(Debian sid, ≈40 s, ≈370 MB; once)")
        staging = self.root.with_name(self.root.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            "mmdebstrap", "--variant=apt", "--quiet",
            "--aptopt=Acquire::Check-Valid-Until \"false\"",
            "--include=asterisk,asterisk-core-sounds-en-wav,llama.cpp-tools",
            "sid", str(staging), self.mirror,
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            hint = ""
            if "Unable to locate package asterisk" in result.stderr:
                hint = ("\nDebian sid currently has no 'asterisk' package; it may be "
                        "in 'experimental' only. Set VOICE_AGENT_ASTERISK_ROOT to a root "
                        "with Asterisk 22 installed, or retry later.")
            raise LocalAsteriskError(
                f"mmdebstrap failed ({result.returncode}):\n{result.stderr[-3000:]}{hint}"
            )
        staging.rename(self.root)
        version = self._chroot_output(["dpkg-query", "-W", "-f=${Version}", "asterisk"])
        self.progress(f"provisioned asterisk {version}")

    def install_configs(self) -> bool:
        """Copy our configs into the chroot, with the tenants' dialplan generated from
        their files (:data:`TENANTS_CONF`); True when any file changed."""
        target = self.root / "etc/asterisk"
        changed = False
        files = {source.name: source.read_bytes() for source in sorted(CONFIG_DIR.glob("*.conf"))}
        files[TENANTS_CONF] = dialplan(TenantRegistry.load()).encode()
        for name, new in files.items():
            destination = target / name
            if not destination.exists() or destination.read_bytes() != new:
                destination.write_bytes(new)
                changed = True
        if changed:
            self.progress(f"installed configs into {target}")
        return changed

    def start(self, timeout: float = 60.0) -> None:
        """Start Asterisk in the chroot and wait until ARI answers."""
        self._require_root()
        self._mount_proc()
        # Runtime and recording dirs (the package does not create the latter).
        self._chroot_output(["sh", "-c", "mkdir -p /run/asterisk "
                             "/var/spool/asterisk/recording && chown asterisk:asterisk "
                             "/run/asterisk /var/spool/asterisk/recording"])
        self.progress("starting Asterisk")
        log = self.log_file.open("ab")
        process = subprocess.Popen(
            ["chroot", str(self.root), "/usr/sbin/asterisk", "-f", "-U", "asterisk",
             "-G", "asterisk"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + timeout
        while self._chroot_rc(["asterisk", "-rx", "core waitfullybooted"]) != 0:
            if process.poll() is not None:
                raise LocalAsteriskError(
                    f"Asterisk exited with {process.returncode} while starting; "
                    f"last log lines:\n{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                raise LocalAsteriskError(f"Asterisk did not boot in {timeout:.0f} s:\n"
                                         f"{self._log_tail()}")
            time.sleep(0.2)
        self._wait_for_ari(max(1.0, deadline - time.monotonic()))

    def down(self, timeout: float = 20.0) -> bool:
        """Stop Asterisk cleanly; returns False when it was not running."""
        pid = self.pid()
        if pid is None:
            self._umount_proc()
            return False
        self.progress(f"stopping Asterisk (pid {pid})")
        self._chroot_rc(["asterisk", "-rx", "core stop now"])
        if not _wait_gone(pid, timeout):
            self.progress("Asterisk ignored 'core stop now'; sending SIGTERM")
            os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, 5):
                self.kill()
        self.pid_file.unlink(missing_ok=True)
        self._umount_proc()
        return True

    def kill(self) -> None:
        """SIGKILL Asterisk: no clean hang-ups, exactly like a crash (tests use this)."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 10)

    def status(self) -> AsteriskStatus:
        pid = self.pid()
        try:
            with httpx.Client(base_url=f"{self.ari_url}/ari", auth=self._auth, timeout=3) as http:
                info = http.get("/asterisk/info")
                info.raise_for_status()
                channels = http.get("/channels").json()
            version = info.json().get("system", {}).get("version")
            return AsteriskStatus(pid is not None, pid, version, True, len(channels))
        except httpx.HTTPError as exc:
            return AsteriskStatus(pid is not None, pid, None, False, None, detail=str(exc))

    def cli(self, command: str) -> str:
        """Run one Asterisk CLI command (``asterisk -rx``) and return its output."""
        self._require_root()
        if self.pid() is None:
            raise LocalAsteriskError("Asterisk is not running (voice-agent asterisk up)")
        return self._chroot_output(["asterisk", "-rx", command])

    def pid(self) -> int | None:
        """Asterisk's pid when it is running (from our pid file, checked in /proc)."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if b"asterisk" in cmdline else None

    # -------------------------------------------------------------- helpers
    def _wait_for_ari(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            status = self.status()
            if status.ari_reachable:
                return
            last = status.detail
            time.sleep(0.2)
        raise LocalAsteriskError(f"ARI at {self.ari_url} did not answer in {timeout:.0f} s "
                                 f"({last}); check http.conf/ari.conf and {self.log_file}")

    def _require_root(self) -> None:
        if os.geteuid() != 0:
            raise LocalAsteriskError(
                "the local Asterisk needs root (mmdebstrap, chroot, mount): "
                "run this command with sudo"
            )

    def _proc_mounted(self) -> bool:
        target = str((self.root / "proc").resolve())
        with open("/proc/mounts", encoding="utf-8") as mounts:
            return any(line.split()[1] == target for line in mounts)

    def _mount_proc(self) -> None:
        if not self._proc_mounted():
            subprocess.run(["mount", "-t", "proc", "proc", str(self.root / "proc")], check=True)

    def _umount_proc(self) -> None:
        if self.root.exists() and self._proc_mounted():
            subprocess.run(["umount", "-l", str(self.root / "proc")], check=False)

    def _chroot_rc(self, cmd: list[str]) -> int:
        return subprocess.run(["chroot", str(self.root), *cmd], capture_output=True).returncode

    def _chroot_output(self, cmd: list[str]) -> str:
        result = subprocess.run(["chroot", str(self.root), *cmd], capture_output=True, text=True)
        if result.returncode != 0:
            raise LocalAsteriskError(f"{' '.join(cmd)} failed in the chroot: "
                                     f"{(result.stderr or result.stdout).strip()}")
        return result.stdout

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        try:  # reap it if it is our child (avoids a zombie that looks alive)
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    return False
