"""``voice-agent tenants check``: one broken tenant per class of error, each with its message
and line; the shipped tenants pass; the CLI exits non-zero on any problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from voice_agent.cli import app
from voice_agent.dialog.tenant_check import check_directory
from voice_agent.tenants import TENANTS_DIR

TENANT = """\
name: shop
display_name: Shop
numbers: ["500"]
greeting_prompt: hello-world
"""
INTENTS = """\
reserve:
  match: ['reserve']
  slots:
    item:
      type: digits
      min_length: 3
      ask: Which item number?
  confirm: Reserve item {{ item }}?
  action:
    - sql: INSERT INTO reservations (item, caller) VALUES (:item, :caller)
  reply: Reserved item {{ item }}.
"""
DATA = """\
CREATE TABLE IF NOT EXISTS reservations (item TEXT, caller TEXT);
"""
CONVERSATIONS = """\
- name: reserve
  steps:
    - say: reserve item one two three
      expect: Reserve item 123
    - say: "yes"
      expect: Reserved
"""


def write_shop(root: Path, *, tenant: str = TENANT, intents: str = INTENTS, data: str = DATA,
               conversations: str = CONVERSATIONS) -> Path:
    shop = root / "shop"
    shop.mkdir(parents=True)
    for name, text in (("tenant.yaml", tenant), ("intents.yaml", intents),
                       ("data.sql", data), ("conversations.yaml", conversations)):
        (shop / name).write_text(text)
    return shop


def test_the_shipped_tenants_and_a_good_one_pass(tmp_path: Path) -> None:
    assert check_directory(TENANTS_DIR)[1] == []
    write_shop(tmp_path)
    assert check_directory(tmp_path) == (1, [])


@pytest.mark.parametrize(("change", "file", "line", "message"), [
    ({"intents": INTENTS.replace("type: digits", "type: colour")}, "intents.yaml", 5,
     "reserve.slots.item.type: Input should be 'digits', 'date'"),
    ({"intents": INTENTS.replace("Reserved item {{ item }}", "Reserved {{ colour }}")},
     "intents.yaml", 11, "names 'colour', which is not a slot"),
    ({"intents": INTENTS.replace("INSERT INTO reservations", "INSERT INTO bookings")},
     "intents.yaml", 10, "SQL does not run on this tenant's tables: no such table: bookings"),
    ({"intents": INTENTS.replace("(:item, :caller)", "(:item, :who)")},
     "intents.yaml", 10, "SQL names :who, which is not a slot"),
    ({"intents": INTENTS.replace("  confirm: Reserve item {{ item }}?\n", "")},
     "intents.yaml", 8, "its action changes data, so it needs a 'confirm' question"),
    ({"intents": INTENTS.replace("['reserve']", "['reserve(']")},
     "intents.yaml", 2, "bad regular expression 'reserve('"),
    ({"intents": INTENTS.replace("{{ item }}?", "{{ item ")},
     "intents.yaml", 8, "template 'Reserve item {{ item': unexpected end of template"),
    ({"data": DATA.replace("IF NOT EXISTS ", "")},
     "data.sql", 1, "data.sql fails on its second run (keep CREATE TABLE IF NOT EXISTS"),
    ({"data": DATA + "INSERT OR IGNORE INTO reservations VALUES ('100', 'x');\n"},
     "data.sql", None, "data.sql adds rows to reservations again on its second run"),
    ({"data": "CREATE TABLE IF NOT EXISTS reservations (item TEXT caller TEXT;\n"},
     "data.sql", 1, "data.sql fails"),
    ({"tenant": TENANT + "hours: {open: {mon: '17:00-09:00'}, closed: Closed.}\n"},
     "tenant.yaml", 5, "hours '17:00-09:00': expected 'HH:MM-HH:MM', opening first"),
    ({"conversations": CONVERSATIONS.replace("expect: Reserved", "expect: Cancelled")},
     "conversations.yaml", 1, "example 'reserve': step 2 ('yes'): the agent said "
                              "'Reserved item 123.', without 'Cancelled'"),
    ({"intents": INTENTS + "  when_heard: [colour]\n"},
     "intents.yaml", 12, "when_heard names 'colour', not one of its slots"),
    ({"intents": INTENTS + "  examples: ['hold item 5']\n"},
     "intents.yaml", 12, "example 'hold item 5' starts no intent: widen its 'match'"),
    ({"tenant": TENANT + "greeting: [unclosed\n"},
     "tenant.yaml", 6, "not valid YAML"),
    ({"conversations": CONVERSATIONS.replace('say: "yes"', "say: yes")},
     "conversations.yaml", 5, "YAML read this as true/false: put it in quotes"),
])
def test_each_broken_tenant_is_reported_with_its_file_line_and_reason(
        tmp_path: Path, change: dict[str, str], file: str, line: int | None,
        message: str) -> None:
    shop = write_shop(tmp_path, **change)
    _, problems = check_directory(tmp_path)
    assert problems, "the broken tenant passed"
    first = problems[0]
    assert (first.path, first.line) == (shop / file, line), str(first)
    assert message in first.message, str(first)


def test_a_number_claimed_twice_names_both_tenants(tmp_path: Path) -> None:
    write_shop(tmp_path)
    (tmp_path / "zoo.yaml").write_text('name: zoo\ndisplay_name: Zoo\ngreeting_prompt: x\n'
                                       'numbers: ["501", "500"]\n')
    [problem] = check_directory(tmp_path)[1]
    assert str(problem) == f"{tmp_path / 'zoo.yaml'}:4: number 500 already belongs to tenant shop"


def test_the_cli_prints_every_problem_and_exits_non_zero(tmp_path: Path) -> None:
    write_shop(tmp_path, intents=INTENTS.replace("{{ item }}.", "{{ a }} {{ b }}."))
    result = CliRunner().invoke(app, ["tenants", "check", str(tmp_path)])
    assert result.exit_code == 1
    assert "names 'a'" in result.output and "names 'b'" in result.output
    assert "3 problem(s)" in result.output  # and the example conversation fails
    ok = CliRunner().invoke(app, ["tenants", "check", str(TENANTS_DIR)])
    assert ok.exit_code == 0 and "3 tenant(s)" in ok.output


def test_the_dialplan_command_routes_each_number(tmp_path: Path) -> None:
    write_shop(tmp_path)
    result = CliRunner().invoke(app, ["tenants", "dialplan", str(tmp_path), "--agi-port", "4600"])
    assert result.exit_code == 0
    assert "exten => 500,1,Stasis(voice_agent,shop)" in result.output
    assert "exten => 500,1,AGI(agi://127.0.0.1:4600/shop)" in result.output


def test_chat_talks_to_a_tenant_from_files(tmp_path: Path) -> None:
    write_shop(tmp_path)
    result = CliRunner().invoke(app, ["chat", "shop", "--directory", str(tmp_path)],
                                input="reserve item one two three\nyes\n")
    assert result.exit_code == 0, result.output
    assert "Reserve item 123?" in result.output and "Reserved item 123." in result.output


def test_a_one_file_tenant_with_inline_intents_gets_the_line_of_its_mistake(
        tmp_path: Path) -> None:
    inline = TENANT + "intents:\n" + "".join(f"  {line}\n" for line in INTENTS.splitlines())
    (tmp_path / "shop.yaml").write_text(inline.replace("type: digits", "type: colour"))
    [problem] = check_directory(tmp_path)[1]
    assert (problem.path, problem.line) == (tmp_path / "shop.yaml", 10), str(problem)
    assert "intents.reserve.slots.item.type" in problem.message
