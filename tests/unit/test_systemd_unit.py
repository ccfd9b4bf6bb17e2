"""The shipped systemd unit (deploy/voice-agent.service) is hardened, as systemd judges it.

``systemd-analyze security --offline`` reads the unit file without a running
systemd (containers have none), scores every sandboxing property and says
which are set. The integration test ``test_hardening`` runs a call under the
same restrictions.
"""

from __future__ import annotations

import json
import re
import subprocess

from tests.helpers import UNIT, unit_service_settings

#: systemd's overall exposure scale is 0-10 ("OK" up to 2.0); --threshold takes it x10.
MAX_EXPOSURE = 2.0


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "security", "--offline=true", *args, str(UNIT)],
                          capture_output=True, text=True, check=False, timeout=60)


def test_the_unit_asks_for_each_hardening_property_the_issue_names() -> None:
    unit = unit_service_settings()
    assert unit["DynamicUser"] == ["yes"]
    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["PrivateTmp"] == ["yes"]
    # read-only, not "yes": a uv-managed Python (the venv's interpreter) lives under
    # the installing user's home; hiding /home and /root breaks serve (test_hardening).
    assert unit["ProtectHome"] == ["read-only"]
    assert set(unit["RestrictAddressFamilies"][0].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert re.fullmatch(r"\d+[KMG]", unit["MemoryMax"][0])
    assert unit["StateDirectory"] == ["voice-agent"]
    assert "VOICE_AGENT_DATA_DIR=/var/lib/voice-agent" in unit["Environment"]
    assert unit["Type"] == ["notify"]  # serve speaks sd_notify


def test_systemd_reports_those_properties_set_and_a_low_exposure() -> None:
    report = _analyze("--json=short")
    assert report.returncode == 0, report.stderr
    entries = {entry["name"]: entry for entry in json.loads(report.stdout)}
    checks = {name: entry["set"] for name, entry in entries.items()}
    # systemd scores read-only as partly exposed ("set" is false) but says so.
    assert "read-only access" in entries["ProtectHome="]["description"]
    for name in ("User=/DynamicUser=", "NoNewPrivileges=", "ProtectSystem=", "PrivateTmp=",
                 "RestrictAddressFamilies=~AF_PACKET",
                 "RestrictAddressFamilies=~AF_NETLINK", "RestrictAddressFamilies=~…",
                 "RestrictNamespaces=~user", "CapabilityBoundingSet=~CAP_SYS_ADMIN"):
        assert checks[name], f"systemd-analyze: {name} is not set"
    scored = _analyze(f"--threshold={int(MAX_EXPOSURE * 10)}")
    assert scored.returncode == 0, scored.stdout[-400:]
    assert "Overall exposure level" in scored.stdout
