"""The dev-Asterisk manager's pure parts: mirror discovery, root check, config install."""

from __future__ import annotations

from pathlib import Path

import pytest

from voice_agent.dev import local_asterisk
from voice_agent.dev.local_asterisk import (
    CONFIG_DIR,
    DEFAULT_MIRROR,
    TENANTS_CONF,
    LocalAsterisk,
    LocalAsteriskError,
    host_mirror,
)
from voice_agent.tenants import TenantRegistry
from voice_agent.tenants.dialplan import dialplan


def _local(root: Path) -> LocalAsterisk:
    return LocalAsterisk(root, ari_url="http://127.0.0.1:1", ari_user="u", ari_password="p",
                         mirror="http://mirror.example/debian", progress=lambda _: None)


def test_host_mirror_from_deb822_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://deb.example.org/debian\nSuites: bookworm\n")
    assert host_mirror(tmp_path) == "http://deb.example.org/debian"


def test_host_mirror_from_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "deb [arch=amd64] http://mirror.example.net/debian bookworm main\n")
    assert host_mirror(tmp_path) == "http://mirror.example.net/debian"


def test_host_mirror_default_when_nothing_matches(tmp_path: Path) -> None:
    assert host_mirror(tmp_path) == DEFAULT_MIRROR


def test_not_root_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_asterisk.os, "geteuid", lambda: 1000)
    with pytest.raises(LocalAsteriskError, match="needs root.*sudo"):
        _local(tmp_path / "root").up()


def test_install_configs_copies_once(tmp_path: Path) -> None:
    local = _local(tmp_path / "root")
    (local.root / "etc/asterisk").mkdir(parents=True)
    assert local.install_configs() is True
    installed = {p.name for p in (local.root / "etc/asterisk").iterdir()}
    assert {"ari.conf", "http.conf", "extensions.conf", "pjsip.conf", TENANTS_CONF} <= installed
    assert (local.root / "etc/asterisk" / TENANTS_CONF).read_text() == dialplan(
        TenantRegistry.load())
    assert local.install_configs() is False  # idempotent: nothing changed
    (local.root / "etc/asterisk/ari.conf").write_text("tampered")
    assert local.install_configs() is True
    assert (local.root / "etc/asterisk/ari.conf").read_bytes() == (
        CONFIG_DIR / "ari.conf").read_bytes()


def test_shipped_dialplan_routes_exactly_the_four_numbers() -> None:
    assert f"#include {TENANTS_CONF}" in (CONFIG_DIR / "extensions.conf").read_text()
    text = dialplan(TenantRegistry.load())
    context = text.split("\n[voice-agent-ari]\n")[1].split("\n[")[0]
    routes = {line.split("=>")[1].split(",")[0].strip(): line.split("Stasis(")[1].rstrip(")")
              for line in context.splitlines() if line.startswith("exten =>")}
    assert routes == {"100": "voice_agent,techstore", "18005551234": "voice_agent,techstore",
                      "18005555678": "voice_agent,healthplus",
                      "18005559999": "voice_agent,edulearn"}


def test_pid_is_none_without_a_running_asterisk(tmp_path: Path) -> None:
    local = _local(tmp_path / "root")
    assert local.pid() is None
    local.pid_file.write_text("999999999")
    assert local.pid() is None
