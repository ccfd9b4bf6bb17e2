"""Tenants: one business per dialled number, chosen by the Stasis argument.

The dialplan decides which tenant a number belongs to
(``Stasis(voice_agent,techstore)``); this module only turns that argument into
a :class:`Tenant`, or into an :class:`UnknownTenantError` whose message tells
the operator exactly which argument was wrong and which ones exist.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

TENANTS_DIR = Path(__file__).parent


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
    """Per-tenant model servers (e.g. a clinic's own speech server); all optional."""

    model_config = ConfigDict(extra="forbid")

    stt: ProviderOverride | None = None
    tts: ProviderOverride | None = None
    llm: ProviderOverride | None = None


class Tenant(BaseModel):
    """What the agent needs to know about one business."""

    name: str = Field(pattern=r"^[a-z0-9_-]+$")
    display_name: str
    numbers: list[str] = Field(default_factory=list, description="The numbers (DIDs) the "
                               "dialplan routes to this tenant.")
    greeting_prompt: str = Field(description="Asterisk sound played on answer.")
    greeting: str = Field("", description="Spoken greeting text; the engine has a default.")
    persona: str = Field("", description="Who the agent is, for an LLM system prompt.")
    rules: list[str] = Field(default_factory=list, description="Rules the agent must keep.")
    operator_extension: str | None = Field(None, description="Where '0' / 'operator' go.")
    operator_context: str = Field(
        "voice-agent-operators", description="Dialplan context of operator_extension."
    )
    silence_ms: int = Field(500, ge=100, description="End-of-turn silence for this tenant.")
    redact_caller: bool = Field(False, description="Store this tenant's callers' numbers "
                                "redacted in the call history (health data).")
    providers: TenantProviders = Field(
        default_factory=TenantProviders,
        description="Model servers for this tenant; unset stages use the service's.")


class TenantFileError(ValueError):
    """A tenant file that is not valid YAML or not a valid tenant; the message names it."""


class UnknownTenantError(LookupError):
    """The Stasis arguments do not name a configured tenant."""


class TenantRegistry:
    """The configured tenants, looked up by name (case-insensitive)."""

    def __init__(self, tenants: Iterable[Tenant]) -> None:
        self._by_name = {t.name: t for t in tenants}

    @classmethod
    def load(cls, directory: Path = TENANTS_DIR) -> TenantRegistry:
        """Read every ``*.yaml`` tenant file in ``directory``.

        Raises :class:`TenantFileError` naming the file and what is wrong in it.
        """
        tenants: list[Tenant] = []
        for path in sorted(directory.glob("*.yaml")):
            try:
                tenants.append(Tenant.model_validate(
                    yaml.safe_load(path.read_text(encoding="utf-8"))))
            except (OSError, UnicodeDecodeError, yaml.YAMLError, ValidationError) as exc:
                raise TenantFileError(f"tenant file {path}: {exc}") from exc
            taken = {n: t.name for t in tenants[:-1] for n in t.numbers}
            if clash := [n for n in tenants[-1].numbers if n in taken]:
                raise TenantFileError(f"tenant file {path}: number {clash[0]} already belongs "
                                      f"to tenant {taken[clash[0]]}")
        return cls(tenants)

    def __iter__(self) -> Iterator[Tenant]:
        return iter(self._by_name.values())

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)

    def numbers(self) -> dict[str, str]:
        """Every number the tenant files name → its tenant (in file order)."""
        return {number: tenant.name for tenant in self for number in tenant.numbers}

    def resolve(self, stasis_args: Sequence[str]) -> Tenant:
        """The tenant named by the first Stasis argument."""
        if not stasis_args or not stasis_args[0].strip():
            raise UnknownTenantError(
                "call entered Stasis without a tenant argument; the dialplan must use "
                f"Stasis(<app>,<tenant>) with one of: {', '.join(self.names)}"
            )
        name = stasis_args[0].strip().lower()
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownTenantError(
                f"unknown tenant {stasis_args[0]!r} in Stasis arguments; "
                f"configured tenants: {', '.join(self.names)}"
            ) from None
