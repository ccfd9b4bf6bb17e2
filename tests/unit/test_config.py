"""Settings: env prefix, validation, secrets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from voice_agent.config import DEV_ARI_PASSWORD, EMBEDDED_CONVERSATIONS, Settings


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No stray .env in the cwd and no VOICE_AGENT_* from the developer's shell."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.upper().startswith("VOICE_AGENT_"):
            monkeypatch.delenv(name)


def test_defaults_are_the_dev_setup() -> None:
    settings = Settings()
    assert settings.ari_url == "http://127.0.0.1:8088"
    assert settings.max_calls == 50
    assert settings.ari_secret() == DEV_ARI_PASSWORD
    assert settings.reconnect_initial <= settings.reconnect_max


def test_env_vars_use_the_voice_agent_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICE_AGENT_ARI_URL", "https://pbx.example.com:8089/")
    monkeypatch.setenv("VOICE_AGENT_MAX_CALLS", "7")
    monkeypatch.setenv("VOICE_AGENT_ARI_USER", "agent7")
    monkeypatch.setenv("VOICE_AGENT_LOG_LEVEL", "DEBUG")
    settings = Settings()
    assert settings.ari_url == "https://pbx.example.com:8089"  # trailing slash stripped
    assert settings.max_calls == 7
    assert settings.ari_user == "agent7"
    assert settings.log_level == "DEBUG"


def test_unprefixed_env_vars_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_CALLS", "3")
    monkeypatch.setenv("ARI_URL", "http://elsewhere:1")
    settings = Settings()
    assert settings.max_calls == 50
    assert settings.ari_url == "http://127.0.0.1:8088"


def test_dotenv_in_cwd_is_read_and_env_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "VOICE_AGENT_MAX_CALLS=9\nVOICE_AGENT_ARI_USER=from_dotenv\n", encoding="utf-8"
    )
    monkeypatch.setenv("VOICE_AGENT_ARI_USER", "from_env")
    settings = Settings()
    assert settings.max_calls == 9
    assert settings.ari_user == "from_env"


@pytest.mark.parametrize(
    "url", ["127.0.0.1:8088", "localhost", "http://", "ftp://pbx:8088", "ws://pbx:8088"]
)
def test_bad_ari_url_is_rejected_clearly(url: str) -> None:
    with pytest.raises(ValidationError, match="ari_url must look like http://host:port") as info:
        Settings(ari_url=url)
    assert repr(url) in str(info.value)


def test_bad_ari_url_from_env_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICE_AGENT_ARI_URL", "pbx.example.com")
    with pytest.raises(ValidationError, match="ari_url must look like"):
        Settings()


def test_reconnect_max_below_initial_is_rejected() -> None:
    with pytest.raises(ValidationError, match="reconnect_max must be >= reconnect_initial"):
        Settings(reconnect_initial=5.0, reconnect_max=1.0)


def test_reconnect_max_equal_to_initial_is_allowed() -> None:
    settings = Settings(reconnect_initial=2.0, reconnect_max=2.0)
    assert settings.reconnect_max == settings.reconnect_initial == 2.0


@pytest.mark.parametrize("value", [0, -1])
def test_max_calls_below_one_is_rejected(value: int) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(max_calls=value)
    errors = info.value.errors()
    assert [e["loc"] for e in errors] == [("max_calls",)]


def test_max_calls_below_one_from_env_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICE_AGENT_MAX_CALLS", "0")
    with pytest.raises(ValidationError, match="max_calls"):
        Settings()


def test_password_file_wins_over_password(tmp_path: Path) -> None:
    secret_file = tmp_path / "ari.secret"
    secret_file.write_text("from-the-file\n", encoding="utf-8")
    settings = Settings(ari_password="inline-password", ari_password_file=secret_file)
    assert settings.ari_secret() == "from-the-file"  # stripped of the newline


def test_password_file_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret_file = tmp_path / "ari.secret"
    secret_file.write_text("  filed  \n", encoding="utf-8")
    monkeypatch.setenv("VOICE_AGENT_ARI_PASSWORD", "inline")
    monkeypatch.setenv("VOICE_AGENT_ARI_PASSWORD_FILE", str(secret_file))
    assert Settings().ari_secret() == "filed"


def test_password_without_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICE_AGENT_ARI_PASSWORD", "env-password")
    assert Settings().ari_secret() == "env-password"


def test_missing_password_file_gives_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "ari.secret"
    settings = Settings(ari_password_file=missing)
    with pytest.raises(ValueError, match="cannot read VOICE_AGENT_ARI_PASSWORD_FILE") as info:
        settings.ari_secret()
    assert str(missing) in str(info.value)
    assert isinstance(info.value.__cause__, OSError)


def test_password_never_in_repr(tmp_path: Path) -> None:
    secret = "hunter2-very-secret"
    settings = Settings(ari_password=secret)
    assert settings.ari_secret() == secret
    assert secret not in repr(settings)
    assert secret not in str(settings)
    assert secret not in settings.model_dump_json()


def test_password_from_env_never_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICE_AGENT_ARI_PASSWORD", "env-secret-123")
    settings = Settings()
    assert settings.ari_secret() == "env-secret-123"
    assert "env-secret-123" not in repr(settings)


def test_the_call_limit_follows_the_provider_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICE_AGENT_MAX_CALLS", raising=False)
    embedded = Settings(_env_file=None, agent="conversation")
    assert embedded.call_limit() == EMBEDDED_CONVERSATIONS < embedded.max_calls
    servers = Settings(_env_file=None, agent="conversation", stt_url="tcp://stt:10300",
                       tts_url="http://tts:8000/v1")
    assert servers.call_limit() == servers.max_calls
    assert Settings(_env_file=None, agent="echo").call_limit() == 50
    assert Settings(_env_file=None, agent="conversation", max_calls=20).call_limit() == 20
    monkeypatch.setenv("VOICE_AGENT_MAX_CALLS", "30")
    assert Settings(_env_file=None, agent="conversation").call_limit() == 30


def test_every_listening_address_defaults_to_loopback() -> None:
    """Exposure: nothing listens beyond this host unless an operator says so."""
    listen = {name: field.default for name, field in Settings.model_fields.items()
              if name in ("rtp_bind_host", "agi_host", "web_host")}
    assert listen == dict.fromkeys(("rtp_bind_host", "agi_host", "web_host"), "127.0.0.1")
    assert Settings(_env_file=None).ari_url.startswith("http://127.0.0.1:")
