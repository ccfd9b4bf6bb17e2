"""A tenant as the agent sees it: one business, its numbers, voice, rules and intents."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from voice_agent.tenants.spec import Conversation, Emergency, Hours, Intent


class ProviderOverride(BaseModel):
    """One model stage served differently for this tenant (the service-wide settings
    apply otherwise). Secrets never live in tenant files: ``api_key_env`` names the
    environment variable that holds the key."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="http(s)://host:port/v1 (OpenAI-compatible) or "
                     "tcp://host:port (Wyoming; STT and TTS only).")
    model: str = ""
    voice: str = ""
    api_key_env: str | None = None

    def api_key(self) -> str | None:
        """The key from ``api_key_env``; a named variable that is unset is an error."""
        if self.api_key_env is None:
            return None
        try:
            return os.environ[self.api_key_env]
        except KeyError:
            raise ValueError(f"tenant provider key: environment variable "
                             f"{self.api_key_env} is not set") from None


class TenantProviders(BaseModel):
    """Per-tenant model servers (e.g. a business's own speech server); all optional."""

    model_config = ConfigDict(extra="forbid")

    stt: ProviderOverride | None = None
    tts: ProviderOverride | None = None
    llm: ProviderOverride | None = None


class Tenant(BaseModel):
    """What the agent needs to know about one business.

    Identity, turn-taking and hand-off come from ``tenant.yaml``; ``intents``,
    ``data_sql`` and ``conversations`` from the other files of the tenant's
    directory (see ``docs/tenants.md``). Frozen: a call keeps the version it
    started with when the tenants are reloaded.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9_-]+$")
    display_name: str
    numbers: list[str] = Field(default_factory=list, description="The numbers (DIDs) the "
                               "dialplan routes to this tenant.")
    language: Literal["en"] = Field("en", description="The rule engine reads English "
                                    "(number words, dates, yes/no).")
    voice: str = Field("", description="TTS voice for this tenant's calls when its speech "
                       "comes from a TTS server ('' = the server's default; the embedded "
                       "Piper speaks with its one voice).")
    greeting_prompt: str = Field(description="Asterisk sound played on answer.")
    greeting: str = Field("", description="Spoken greeting text; the engine has a default.")
    help: str = Field("", description="What the agent can do, said when it did not "
                      "understand (default: built from the intents' descriptions).")
    persona: str = Field("", description="Who the agent is, for an LLM system prompt.")
    rules: list[str] = Field(default_factory=list, description="Rules the agent must keep.")
    operator_extension: str | None = Field(None, description="Where '0' / 'operator' go.")
    operator_context: str = Field(
        "voice-agent-operators", description="Dialplan context of operator_extension."
    )
    hours: Hours | None = Field(None, description="When a transfer can be taken.")
    silence_ms: int = Field(500, ge=100, description="End-of-turn silence for this tenant.")
    redact_caller: bool = Field(False, description="Store this tenant's callers' numbers "
                                "redacted in the call history (health data).")
    emergency: Emergency | None = Field(None, description="The emergency screen, in every mode.")
    providers: TenantProviders = Field(
        default_factory=TenantProviders,
        description="Model servers for this tenant; unset stages use the service's.")
    intents: dict[str, Intent] = Field(default_factory=dict, description="intents.yaml")
    data_sql: str = Field("", repr=False, description="data.sql: tables and seed rows.")
    conversations: list[Conversation] = Field(default_factory=list,
                                              description="conversations.yaml")

    def dials(self, conversation: Conversation) -> str:
        """The number a call for ``conversation`` dials: its own, else the tenant's first."""
        return conversation.number or self.numbers[0]
