"""One settings object for the whole service.

Every knob is an environment variable prefixed ``VOICE_AGENT_`` (or a line in a
``.env`` file), so the same binary runs the dev Asterisk, CI and a production
PBX without code changes. Secrets are ``SecretStr`` so they never land in logs
or ``repr``; the ARI password can also come from a file (``ari_password_file``),
which is how container and systemd secret stores hand them over.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Development credentials, matching the ari.conf we ship for the local Asterisk.
#: They are the defaults only so that `voice-agent demo` works out of the box on
#: loopback; production sets VOICE_AGENT_ARI_PASSWORD or VOICE_AGENT_ARI_PASSWORD_FILE.
DEV_ARI_USER = "voice_agent"
DEV_ARI_PASSWORD = "voice_agent_secret"


class Settings(BaseSettings):
    """Runtime configuration (env prefix ``VOICE_AGENT_``)."""

    model_config = SettingsConfigDict(
        env_prefix="VOICE_AGENT_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    # --- ARI connection -------------------------------------------------
    ari_url: str = Field(
        "http://127.0.0.1:8088",
        description="Base URL of Asterisk's HTTP server (without /ari).",
    )
    ari_user: str = Field(DEV_ARI_USER, description="ARI user from ari.conf.")
    ari_password: SecretStr = Field(
        SecretStr(DEV_ARI_PASSWORD), description="ARI password (prefer ari_password_file)."
    )
    ari_password_file: Path | None = Field(
        None, description="File holding the ARI password; wins over ari_password."
    )
    app_name: str = Field("voice_agent", description="Stasis application name.")
    request_timeout: float = Field(5.0, gt=0, description="ARI REST timeout, seconds.")
    reconnect_initial: float = Field(0.5, gt=0, description="First reconnect delay, s.")
    reconnect_max: float = Field(15.0, gt=0, description="Longest reconnect delay, s.")

    # --- Calls ------------------------------------------------------------
    max_calls: int = Field(50, ge=1, description="Admission limit: concurrent calls.")
    unknown_tenant_prompt: str = Field(
        "ss-noservice", description="Sound played when the tenant is unknown."
    )
    busy_prompt: str = Field(
        "all-circuits-busy-now", description="Sound played when max_calls is reached."
    )
    max_call_seconds: float = Field(
        3600.0, gt=0, description="Hard cap on one call's length (runaway protection)."
    )

    # --- Agent and media -----------------------------------------------------
    agent: Literal["greeting", "echo", "conversation"] = Field(
        "greeting",
        description="greeting: answer, greet, hold; echo: play the caller's audio back; "
        "conversation: the embedded voice agent (VAD, Whisper, dialog engine, Piper).",
    )
    data_dir: Path | None = Field(
        None, description="Where tenant data (SQLite) lives; default ~/.local/share/voice-agent."
    )
    echo_delay_ms: int = Field(0, ge=0, le=10_000, description="Echo agent delay, ms.")
    media_transport: Literal["rtp", "websocket"] = Field(
        "websocket",
        description="externalMedia transport; websocket falls back to rtp without "
        "chan_websocket.",
    )
    rtp_format: Literal["ulaw", "alaw", "slin"] = Field(
        "ulaw", description="RTP payload format (8 kHz) for the rtp transport."
    )
    rtp_bind_host: str = Field("127.0.0.1", description="Local address of the RTP socket.")
    rtp_port: int = Field(0, ge=0, le=65535, description="RTP socket port (0 = any free).")
    rtp_advertise_host: str = Field(
        "", description="Address Asterisk sends RTP to (default: rtp_bind_host)."
    )

    # --- Local (dev/CI) Asterisk ------------------------------------------
    asterisk_root: Path = Field(
        Path("/var/lib/voice-agent/asterisk-root"),
        description="Chroot holding the dev Asterisk 22 (voice-agent asterisk up).",
    )
    debian_mirror: str = Field(
        "", description="Debian mirror for provisioning; empty = the host's apt mirror."
    )
    sip_port: int = Field(5060, ge=1, le=65535, description="Dev Asterisk SIP/UDP port.")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("ari_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"ari_url must look like http://host:port, got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_reconnect(self) -> Settings:
        if self.reconnect_max < self.reconnect_initial:
            raise ValueError("reconnect_max must be >= reconnect_initial")
        return self

    def ari_secret(self) -> str:
        """The ARI password, read from ``ari_password_file`` when that is set."""
        if self.ari_password_file is not None:
            try:
                return self.ari_password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(
                    f"cannot read VOICE_AGENT_ARI_PASSWORD_FILE {self.ari_password_file}: {exc}"
                ) from exc
        return self.ari_password.get_secret_value()
