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

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Development credentials, matching the ari.conf we ship for the local Asterisk.
#: They are the defaults only so that `voice-agent demo` works out of the box on
#: loopback; production sets VOICE_AGENT_ARI_PASSWORD or VOICE_AGENT_ARI_PASSWORD_FILE.
DEV_ARI_USER = "voice_agent"
DEV_ARI_PASSWORD = "voice_agent_secret"

#: Conversations the embedded models hold on the reference 2-core box with V2V p95
#: within 2 s (``voice-agent bench load --models embedded``); the default admission
#: limit while STT or TTS is embedded.
EMBEDDED_CONVERSATIONS = 10  # p95 1.80 s at 10, 2.39 s at 12 (commit 2f1a8cb)


def check_provider_url(setting: str, url: str, *, tcp_ok: bool = True) -> None:
    """Raise ``ValueError`` naming ``setting`` unless ``url`` is a usable server URL."""
    parts = urlsplit(url)
    schemes = ("http", "https", "tcp") if tcp_ok else ("http", "https")
    if parts.scheme not in schemes or not parts.hostname:
        expected = "http://host:port/v1" + (" or tcp://host:port" if tcp_ok else "")
        raise ValueError(f"{setting} must look like {expected}, got {url!r}")
    if parts.scheme == "tcp" and parts.port is None:
        raise ValueError(f"{setting}: a Wyoming server URL needs a port (tcp://host:port), "
                         f"got {url!r}")


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
    reconcile_seconds: float = Field(
        60.0, ge=0,
        description="Every this many seconds, compare live calls, media channels and bridges "
        "with Asterisk and clean up leftovers seen on two checks in a row (0 = only after "
        "an ARI reconnect).",
    )

    # --- Agent and media -----------------------------------------------------
    agent: Literal["greeting", "echo", "conversation"] = Field(
        "conversation",
        description="conversation: the embedded voice agent (VAD, Whisper, dialog engine, "
        "Piper); echo: play the caller's audio back; greeting: answer, greet, hold.",
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

    # --- AGI fallback (voice-agent agi) ------------------------------------
    agi_host: str = Field("127.0.0.1", description="FastAGI listen address.")
    agi_port: int = Field(4573, ge=1, le=65535, description="FastAGI port (Asterisk's default).")
    agi_audio_dir: str = Field(
        "/var/spool/asterisk/voice-agent-agi",
        description="Directory for per-turn recordings and replies, as Asterisk sees it.",
    )
    agi_audio_host_dir: Path | None = Field(
        None,
        description="The same directory as the agent sees it; default asterisk_root + "
        "agi_audio_dir. Set it (usually to agi_audio_dir) when Asterisk is not in a chroot.",
    )
    agi_silence_seconds: int = Field(
        2, ge=1, le=10, description="Silence that ends a caller turn (RECORD FILE s=, whole s)."
    )
    agi_max_record_seconds: float = Field(
        20.0, gt=0, le=300, description="Longest caller turn one RECORD FILE takes."
    )

    # --- Language model (optional) ----------------------------------------------
    llm_url: str | None = Field(
        None, description="OpenAI-compatible base URL (e.g. http://127.0.0.1:11434/v1 for "
        "Ollama); when set, the conversation agent's replies and tool calls come from this "
        "model, and the embedded dialog engine answers any turn the server fails.")
    llm_model: str = Field("", description="Model name the LLM server expects.")
    llm_api_key: SecretStr | None = Field(None, description="Bearer token for the LLM server.")
    llm_max_tokens: int = Field(
        120, ge=1, description="Longest reply the LLM may write, in tokens: a phone reply is "
        "short, and a small model left unbounded can talk for minutes.")
    llm_first_token_timeout: float = Field(
        3.0, gt=0, description="Seconds to wait for the model's first token before the "
        "embedded engine answers instead (the caller is waiting).")

    # --- Speech providers (optional; default: the embedded models) ----------------
    stt_url: str | None = Field(
        None, description="Speech-to-text server: http(s)://host:port/v1 for an OpenAI-"
        "compatible /audio/transcriptions, or tcp://host:port for a Wyoming ASR server "
        "(wyoming-faster-whisper). Unset: embedded Whisper.")
    stt_model: str = Field("", description="Model name for the STT server ('' = its default).")
    stt_api_key: SecretStr | None = Field(None, description="Bearer token for the STT server.")
    tts_url: str | None = Field(
        None, description="Text-to-speech server: http(s)://host:port/v1 for an OpenAI-"
        "compatible /audio/speech, or tcp://host:port for a Wyoming TTS server "
        "(wyoming-piper). Unset: embedded Piper.")
    tts_model: str = Field("", description="Model name for the TTS server ('' = its default).")
    tts_voice: str = Field("", description="Voice for the TTS server ('' = its default).")
    tts_api_key: SecretStr | None = Field(None, description="Bearer token for the TTS server.")
    tts_format: Literal["pcm", "wav"] = Field(
        "pcm", description="OpenAI-compatible TTS response format (pcm streams).")
    tts_sample_rate: int = Field(
        24000, ge=8000, le=48000, description="Rate of the OpenAI-compatible server's pcm.")
    provider_connect_timeout: float = Field(
        2.0, gt=0, description="Seconds to connect to any model server.")
    stt_timeout: float = Field(
        4.0, gt=0, description="Seconds an STT server may take to return a transcript.")
    tts_first_audio_timeout: float = Field(
        2.5, gt=0, description="Seconds a TTS server may take to its first audio (and "
        "between chunks).")
    embedded_fallback: bool = Field(
        True, description="Keep the embedded models loaded as the last provider of every "
        "chain (a server failing before the caller heard anything hands over to them).")
    turn_watchdog_seconds: float = Field(
        20.0, gt=0, description="A call stuck this long in THINKING, or SPEAKING with "
        "nothing playing, gets a spoken apology and goes back to LISTENING.")

    history_url: str = Field(
        "", description="Where ended calls are stored: a SQLAlchemy URL (sqlite:///PATH, "
        "postgresql+psycopg://USER:PASSWORD@HOST/DB); empty: DATA_DIR/history.sqlite3; "
        "'off': not stored.")
    history_retention_days: float = Field(
        30.0, ge=0, description="Calls older than this are deleted (0: kept for ever).")
    web_host: str = Field("127.0.0.1", description="Address of the metrics web server; "
                          "keep it on loopback unless a proxy guards it.")
    web_port: int = Field(8090, ge=0, le=65535, description="Port of /metrics and the "
                          "dashboard (0: no web server).")
    web_token: SecretStr | None = Field(
        None, description="Token for the dashboard (Authorization: Bearer, or the login "
        "form); unset: serve makes a random one and keeps it in DATA_DIR/web-token.")
    agi_web_port: int = Field(8091, ge=0, le=65535, description="Port of the AGI fallback's "
                              "/metrics (0: none); it runs beside `serve`, so not web_port.")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = Field(
        "text", description="json: one JSON object per line, with call_id and tenant on "
        "every line logged inside a call.")

    @field_validator("ari_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"ari_url must look like http://host:port, got {value!r}")
        return value.rstrip("/")

    @field_validator("stt_url", "tts_url", "llm_url")
    @classmethod
    def _check_provider_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value:
            return None
        check_provider_url(f"VOICE_AGENT_{info.field_name.upper()}", value,
                           tcp_ok=info.field_name != "llm_url")
        return value.rstrip("/")

    @field_validator("agi_audio_dir")
    @classmethod
    def _check_agi_audio_dir(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"agi_audio_dir must be an absolute path, got {value!r}")
        return value.rstrip("/") or "/"

    @model_validator(mode="after")
    def _check_reconnect(self) -> Settings:
        if self.reconnect_max < self.reconnect_initial:
            raise ValueError("reconnect_max must be >= reconnect_initial")
        return self

    def call_limit(self) -> int:
        """The admission limit in force: ``max_calls`` when set, else what the models hold.

        With an embedded STT or TTS the models, not the media path, are the
        bottleneck: past :data:`EMBEDDED_CONVERSATIONS` conversations on the
        reference 2-core box their latency grows for every caller (``bench load
        --models embedded``), so unset, the limit follows the provider mode and
        callers beyond it hear the busy prompt instead of slowing everyone down.
        """
        if "max_calls" in self.model_fields_set or self.agent != "conversation":
            return self.max_calls
        if self.stt_url and self.tts_url:
            return self.max_calls
        return min(self.max_calls, EMBEDDED_CONVERSATIONS)

    def agi_audio_host_path(self) -> Path:
        """Where the agent finds ``agi_audio_dir``: inside the chroot unless overridden.

        Asterisk and the agent must see the same files under two names: Asterisk
        records to and plays from ``agi_audio_dir``, which for the chrooted dev
        Asterisk is ``asterisk_root`` + that path on the host.
        """
        if self.agi_audio_host_dir is not None:
            return self.agi_audio_host_dir
        return self.asterisk_root / self.agi_audio_dir.lstrip("/")

    def data_directory(self) -> Path:
        """``DATA_DIR``, or ~/.local/share/voice-agent; created if missing."""
        directory = self.data_dir or Path.home() / ".local/share/voice-agent"
        directory.mkdir(parents=True, exist_ok=True)
        return directory

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
