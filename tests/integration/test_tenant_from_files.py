"""A business that joins by writing files: the fourth tenant (tests/tenants/bistro, not
shipped) books a table by voice on a real SIP call through Asterisk, and the row is in
its own database. Its number is routed by the dialplan generated from the tenant files
(``voice-agent tenants dialplan``), which the dev Asterisk reloads for this test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import TalkTo, assert_nothing_left
from voice_agent.ari.asterisk_ari import AriClient
from voice_agent.dev.local_asterisk import LocalAsterisk
from voice_agent.dev.sim.conversation import steps_of, words_heard
from voice_agent.dialog.examples import outcome_holds
from voice_agent.tenants import TENANTS_DIR, TENANTS_DIR_ENV, TenantRegistry
from voice_agent.tenants.data import open_db, tenant_db_path

BISTRO = Path(__file__).parents[1] / "tenants" / "bistro"


@pytest.fixture
def with_bistro(local_asterisk: LocalAsterisk, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The shipped tenants plus the bistro, served and routed; the shipped set after."""
    tenants = tmp_path / "tenants"
    shutil.copytree(TENANTS_DIR, tenants, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    shutil.copytree(BISTRO, tenants / "bistro")
    monkeypatch.setenv(TENANTS_DIR_ENV, str(tenants))
    local_asterisk.install_configs()
    local_asterisk.cli("dialplan reload")
    try:
        yield tenants
    finally:
        monkeypatch.delenv(TENANTS_DIR_ENV)
        local_asterisk.install_configs()
        local_asterisk.cli("dialplan reload")


async def test_a_tenant_defined_only_by_files_books_a_table_by_voice(
    with_bistro: Path, talk_to: TalkTo, inspector: AriClient,
) -> None:
    bistro = TenantRegistry.load(with_bistro).resolve(["bistro"])
    example = next(c for c in bistro.conversations if "demo" in c.use)
    ask, confirm = steps_of(example)
    async with talk_to(bistro.numbers[0]) as talk:
        greeting = await talk.caller.greeting()
        assert greeting.heard, greeting  # words vary: tiny.en hears "Bistro" many ways
        await talk.caller.step(ask)
        await talk.caller.finish()
        turns = talk.session.record.turns
        assert talk.session.record.tenant == "bistro"
        assert "shall i book it" in turns[-1]["reply"].lower(), [t.get("heard") for t in turns]
        await talk.caller.step(confirm)
        [*_, booked] = await talk.caller.finish()
        reply = talk.session.record.turns[-1]["reply"]
        assert reply.startswith("You're booked: a table for 4"), reply
        assert words_heard(reply, booked.heard) >= 0.5, booked
        caller = talk.session.record.caller or "anonymous"
        assert example.outcome is not None
        db = open_db(tenant_db_path("bistro", talk.data_dir))
        assert outcome_holds(example.outcome, db, caller, reply)
        with db.transaction() as conn:
            assert [tuple(r) for r in conn.execute(
                "SELECT party, time FROM reservations WHERE caller_id = ?", (caller,))] == \
                [(4, "19:00")]
        await talk.call.hangup()
        await assert_nothing_left(inspector, talk.manager)
