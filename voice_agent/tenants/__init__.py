"""Tenants: one business per dialled number, chosen by the Stasis argument.

The dialplan decides which tenant a number belongs to
(``Stasis(voice_agent,acme)``); this module only turns that argument into
a :class:`Tenant`, or into an :class:`UnknownTenantError` whose message tells
the operator exactly which argument was wrong and which ones exist.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from voice_agent.tenants.loader import Problem, TenantSource, read_tenants
from voice_agent.tenants.model import ProviderOverride, Tenant, TenantProviders

__all__ = ["TENANTS_DIR", "TENANTS_DIR_ENV", "Problem", "ProviderOverride", "Tenant",
           "TenantFileError", "TenantProviders", "TenantRegistry", "TenantSource",
           "UnknownTenantError", "tenants_directory"]

#: The shipped tenants (one directory each).
TENANTS_DIR = Path(__file__).parent
#: Points the service at another tenants directory (``docs/tenants.md``).
TENANTS_DIR_ENV = "VOICE_AGENT_TENANTS_DIR"


def tenants_directory() -> Path:
    """``$VOICE_AGENT_TENANTS_DIR`` if set, else the shipped tenants."""
    configured = os.environ.get(TENANTS_DIR_ENV)
    return Path(configured) if configured else TENANTS_DIR


class TenantFileError(ValueError):
    """A tenant file that is not valid YAML or not a valid tenant; the message names it."""


class UnknownTenantError(LookupError):
    """The Stasis arguments do not name a configured tenant."""


class TenantRegistry:
    """The configured tenants, looked up by name (case-insensitive)."""

    def __init__(self, tenants: Iterable[Tenant]) -> None:
        self._by_name = {t.name: t for t in tenants}

    @classmethod
    def load(cls, directory: Path | None = None) -> TenantRegistry:
        """Read every tenant in ``directory`` (default :func:`tenants_directory`).

        Raises :class:`TenantFileError` listing every problem, each with its file
        and line; a registry is never built from a half-valid directory.
        """
        sources, problems = read_tenants(directory or tenants_directory())
        if problems:
            raise TenantFileError("\n".join(f"tenant file {p}" for p in problems))
        return cls(source.tenant for source in sources)

    def replace(self, fresh: TenantRegistry) -> None:
        """Take ``fresh``'s tenants (a reload). Everything holding this registry sees
        them from the next lookup; a call keeps the :class:`Tenant` it resolved."""
        self._by_name = dict(fresh._by_name)

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
