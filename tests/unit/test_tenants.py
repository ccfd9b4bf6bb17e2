"""Tenant registry: loading and resolving the Stasis argument."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from voice_agent.tenants import Tenant, TenantFileError, TenantRegistry, UnknownTenantError

SHIPPED = ["edulearn", "healthplus", "techstore"]


def test_shipped_tenants_are_loaded(registry: TenantRegistry) -> None:
    assert registry.names == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_tenant_resolves(registry: TenantRegistry, name: str) -> None:
    tenant = registry.resolve([name])
    assert tenant.name == name
    assert tenant.display_name
    assert tenant.greeting_prompt


def test_display_names(registry: TenantRegistry) -> None:
    assert registry.resolve(["techstore"]).display_name == "TechStore"
    assert registry.resolve(["healthplus"]).display_name == "HealthPlus"
    assert registry.resolve(["edulearn"]).display_name == "EduLearn"


@pytest.mark.parametrize("arg", ["TechStore", "TECHSTORE", " techstore ", "techStore\t"])
def test_resolution_is_case_and_space_insensitive(registry: TenantRegistry, arg: str) -> None:
    assert registry.resolve([arg]).name == "techstore"


def test_only_first_argument_names_the_tenant(registry: TenantRegistry) -> None:
    assert registry.resolve(["healthplus", "techstore", "extra"]).name == "healthplus"


@pytest.mark.parametrize("args", [[], (), [""], ["   "]])
def test_missing_tenant_argument(registry: TenantRegistry, args: list[str]) -> None:
    with pytest.raises(UnknownTenantError) as info:
        registry.resolve(args)
    message = str(info.value)
    assert "without a tenant argument" in message
    assert "edulearn, healthplus, techstore" in message


@pytest.mark.parametrize("arg", ["nosuch", "tech store", "techstore2"])
def test_unknown_tenant_lists_configured_ones(registry: TenantRegistry, arg: str) -> None:
    with pytest.raises(UnknownTenantError) as info:
        registry.resolve([arg])
    message = str(info.value)
    assert repr(arg) in message
    assert "configured tenants: edulearn, healthplus, techstore" in message


def test_unknown_tenant_error_is_a_lookup_error() -> None:
    assert issubclass(UnknownTenantError, LookupError)


def _write(directory: Path, filename: str, text: str) -> None:
    (directory / filename).write_text(text, encoding="utf-8")


def test_load_custom_directory(tmp_path: Path) -> None:
    _write(tmp_path, "acme.yaml",
           "# comment\nname: acme\ndisplay_name: ACME Corp\ngreeting_prompt: acme-hello\n")
    _write(tmp_path, "zeta_2.yaml",
           "name: zeta_2\ndisplay_name: Zeta\ngreeting_prompt: beep\n")
    _write(tmp_path, "ignored.txt", "name: notatenant\n")
    registry = TenantRegistry.load(tmp_path)
    assert registry.names == ["acme", "zeta_2"]
    acme = registry.resolve(["ACME"])
    assert acme == Tenant(name="acme", display_name="ACME Corp", greeting_prompt="acme-hello")
    with pytest.raises(UnknownTenantError, match="configured tenants: acme, zeta_2"):
        registry.resolve(["techstore"])


def test_empty_directory_has_no_tenants(tmp_path: Path) -> None:
    registry = TenantRegistry.load(tmp_path)
    assert registry.names == []
    with pytest.raises(UnknownTenantError):
        registry.resolve(["techstore"])


@pytest.mark.parametrize("bad_name", ["TechStore", "tech store", "tech.store", "", "ü"])
def test_invalid_tenant_name_is_rejected(bad_name: str) -> None:
    with pytest.raises(ValidationError) as info:
        Tenant(name=bad_name, display_name="X", greeting_prompt="beep")
    assert [e["loc"] for e in info.value.errors()] == [("name",)]


def test_invalid_tenant_file_is_rejected(tmp_path: Path) -> None:
    _write(tmp_path, "bad.yaml", "name: Bad Name\ndisplay_name: Bad\ngreeting_prompt: beep\n")
    with pytest.raises(TenantFileError, match=r"bad\.yaml(.|\n)*name"):
        TenantRegistry.load(tmp_path)


def test_tenant_file_missing_field_is_rejected(tmp_path: Path) -> None:
    _write(tmp_path, "partial.yaml", "name: partial\ndisplay_name: Partial\n")
    with pytest.raises(TenantFileError, match=r"partial\.yaml(.|\n)*greeting_prompt"):
        TenantRegistry.load(tmp_path)


def test_tenant_files_name_their_numbers_and_a_number_belongs_to_one_tenant(
        tmp_path: Path) -> None:
    assert TenantRegistry.load().numbers() == {
        "18005559999": "edulearn", "18005555678": "healthplus", "100": "techstore",
        "18005551234": "techstore"}
    _write(tmp_path, "a.yaml", 'name: a\ndisplay_name: A\ngreeting_prompt: beep\n'
           'numbers: ["200"]\n')
    _write(tmp_path, "b.yaml", 'name: b\ndisplay_name: B\ngreeting_prompt: beep\n'
           'numbers: ["201", "200"]\n')
    with pytest.raises(TenantFileError, match=r"b\.yaml:4: number 200 already belongs to "
                                              r"tenant a"):
        TenantRegistry.load(tmp_path)


async def test_a_reload_takes_a_valid_set_and_keeps_the_running_one_on_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import shutil

    from voice_agent.service import checked_tenants, reload_tenants
    from voice_agent.tenants import TENANTS_DIR

    shutil.copytree(TENANTS_DIR, tmp_path / "t", ignore=shutil.ignore_patterns("*.py",
                                                                                "__pycache__"))
    registry = checked_tenants(tmp_path / "t")
    in_call = registry.resolve(["techstore"])  # what a live call holds
    tenant_file = tmp_path / "t/techstore/tenant.yaml"
    tenant_file.write_text(tenant_file.read_text().replace("Hi, this is TechStore.",
                                                           "Hello from TechStore."))
    _write(tmp_path / "t", "acme.yaml", "name: acme\ndisplay_name: ACME\ngreeting_prompt: x\n")
    assert await reload_tenants(registry, tmp_path / "t")
    assert registry.resolve(["techstore"]).greeting.startswith("Hello from TechStore.")
    assert in_call.greeting.startswith("Hi, this is TechStore.")  # the call keeps its version
    assert "acme" in registry.names
    # a broken set (a template naming a slot the intent lacks) is refused as a whole
    intents = tmp_path / "t/edulearn/intents.yaml"
    intents.write_text(intents.read_text().replace("{{ course.title }} runs",
                                                   "{{ cours.title }} runs", 1))
    (tmp_path / "t/acme.yaml").unlink()
    assert not await reload_tenants(registry, tmp_path / "t")
    assert "acme" in registry.names
    assert "tenants NOT reloaded" in caplog.text and "names 'cours'" in caplog.text
    with pytest.raises(TenantFileError, match=r"intents\.yaml:\d+: intent enrol: names 'cours'"):
        checked_tenants(tmp_path / "t")
    with pytest.raises(TenantFileError, match="no tenants in .*/nowhere: point VOICE_AGENT_"):
        checked_tenants(tmp_path / "nowhere")
