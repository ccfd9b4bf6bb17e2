"""Reading tenants from files: a directory per business, or one YAML file for a simple one.

Layout (``docs/tenants.md``)::

    tenants/
      acme/
        tenant.yaml          identity, numbers, voice, hand-off, emergency screen
        intents.yaml         what callers can ask for (optional)
        data.sql             the tenant's tables and seed rows (optional)
        conversations.yaml   example conversations and their outcomes (optional)
      acme.yaml              a tenant with no intents of its own

Every problem is reported as a :class:`Problem` with its file and line, and
all problems of a directory are collected, so an author fixes them in one pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from voice_agent.tenants.model import Tenant
from voice_agent.tenants.yaml_lines import YamlDoc, line_of
from voice_agent.tenants.yaml_lines import load as load_yaml

#: The files of a tenant directory and the Tenant field each fills.
PARTS = {"intents.yaml": "intents", "conversations.yaml": "conversations"}


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a tenant's files, located for its author."""

    path: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}" if self.line else \
            f"{self.path}: {self.message}"


@dataclass
class TenantSource:
    """A tenant and the parsed files it came from (for line numbers in later checks)."""

    tenant: Tenant
    directory: Path | None
    docs: dict[str, tuple[Path, YamlDoc]] = field(default_factory=dict)

    def locate(self, part: str, loc: tuple[str | int, ...]) -> tuple[Path, int | None]:
        """The file and line of ``loc`` inside the tenant's ``part`` (``"intents"`` …)."""
        return _locate(self.docs, (part, *loc) if part in PARTS.values() else loc)


def tenant_files(directory: Path) -> Iterator[Path]:
    """The tenant definitions in ``directory``: ``*/tenant.yaml`` and ``*.yaml``, sorted."""
    found = [*directory.glob("*/tenant.yaml"), *directory.glob("*.yaml")]
    yield from sorted(found, key=lambda p: p.parent.name if p.name == "tenant.yaml" else p.stem)


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top)"


def _locate(files: dict[str, tuple[Path, YamlDoc]], loc: tuple[Any, ...]
            ) -> tuple[Path, int | None]:
    """The file and line of a :class:`Tenant` field path (``("intents", "book", …)``):
    in the part's own file, or under its key in a one-file tenant's YAML."""
    filename = next((f for f, part in PARTS.items() if loc[:1] == (part,)), "tenant.yaml")
    if filename in files:
        path, doc = files[filename]
        return path, line_of(doc, loc if filename == "tenant.yaml" else loc[1:])
    path, doc = files["tenant.yaml"]
    return path, line_of(doc, loc)


def _validation_problems(exc: ValidationError, files: dict[str, tuple[Path, YamlDoc]]
                         ) -> list[Problem]:
    return [Problem(*_locate(files, tuple(error["loc"])),
                    f"{_where(tuple(error['loc']))}: {error['msg']}") for error in exc.errors()]


def read_tenant(definition: Path) -> tuple[TenantSource | None, list[Problem]]:
    """One tenant from ``definition`` (a ``tenant.yaml`` or a single ``<name>.yaml``)."""
    directory = definition.parent if definition.name == "tenant.yaml" else None
    files: dict[str, tuple[Path, YamlDoc]] = {}
    problems: list[Problem] = []
    names = ["tenant.yaml", *PARTS] if directory else ["tenant.yaml"]
    for filename in names:
        path = directory / filename if directory else definition
        if not path.exists():
            continue
        try:
            files[filename] = (path, load_yaml(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(path, None, f"cannot read: {exc}"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problems.append(Problem(path, mark.line + 1 if mark else None,
                                    f"not valid YAML: {getattr(exc, 'problem', exc)}"))
    if problems:
        return None, problems
    data = files["tenant.yaml"][1].value
    if not isinstance(data, dict):
        return None, [Problem(files["tenant.yaml"][0], 1, "expected a mapping of tenant fields")]
    data = dict(data)
    for filename, part in PARTS.items():
        if filename in files:
            data[part] = files[filename][1].value
    if isinstance(data.get("intents"), dict):
        # Keys starting with "." hold YAML anchors shared by intents, not intents.
        data["intents"] = {k: v for k, v in data["intents"].items()
                           if not str(k).startswith(".")}
    if directory is not None and (directory / "data.sql").exists():
        data["data_sql"] = (directory / "data.sql").read_text(encoding="utf-8")
    try:
        tenant = Tenant.model_validate(data)
    except ValidationError as exc:
        return None, _validation_problems(exc, files)
    expected = directory.name if directory else definition.stem
    if tenant.name != expected:
        path, doc = files["tenant.yaml"]
        return None, [Problem(path, line_of(doc, ("name",)), f"name {tenant.name!r} differs "
                              f"from its {'directory' if directory else 'file'} {expected!r}")]
    return TenantSource(tenant, directory, files), []


def read_tenants(directory: Path) -> tuple[list[TenantSource], list[Problem]]:
    """Every tenant in ``directory`` and every problem found reading them.

    A number (DID) claimed by two tenants is a problem of the second one.
    """
    sources: list[TenantSource] = []
    problems: list[Problem] = []
    owners: dict[str, str] = {}
    for definition in tenant_files(directory):
        source, found = read_tenant(definition)
        problems += found
        if source is None:
            continue
        path, doc = source.docs["tenant.yaml"]
        for i, number in enumerate(source.tenant.numbers):
            if number in owners:
                problems.append(Problem(path, line_of(doc, ("numbers", i)), f"number {number} "
                                        f"already belongs to tenant {owners[number]}"))
            owners.setdefault(number, source.tenant.name)
        sources.append(source)
    return sources, problems
