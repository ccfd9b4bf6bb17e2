"""The dashboard in a real browser (Debian's headless Chromium, driven by Playwright),
after a real call through `voice-agent serve`.

The browser logs in with the token, watches the call appear on the live page
and leave it by itself (the page's own refresh), then finds it in the history
and opens its page: what the page shows must be what the call history stored.
Screenshots of each page go to ``bench/results/dashboard/`` (linked from the
README).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from playwright.async_api import Page, async_playwright

from tests.helpers import eventually
from tests.integration.serve_process import serve_process
from voice_agent.ari.asterisk_ari import AriClient
from voice_agent.config import Settings
from voice_agent.dev.local_asterisk import LocalAsterisk
from voice_agent.dev.model_servers import free_tcp_port
from voice_agent.dev.sim.conversation import ScriptedCaller, Step
from voice_agent.dev.sim.phone import SimPhone
from voice_agent.history import HistoryReader
from voice_agent.providers.stt import WhisperStt

TOKEN = "dashboard-test-token-4d1c9e"
CHROMIUM = "/usr/bin/chromium"  # Debian's package (scripts/install.sh); no browser download
SHOTS = Path(__file__).resolve().parents[2] / "bench/results/dashboard"


@contextlib.asynccontextmanager
async def browser_page() -> AsyncIterator[Page]:
    async with async_playwright() as playwright:
        # --no-sandbox: the suite runs as root in a container, where Chromium's sandbox cannot
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                   args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 800})
            yield page
        finally:
            await browser.close()


async def test_the_dashboard_shows_a_real_call_live_and_afterwards(
    local_asterisk: LocalAsterisk, settings: Settings, inspector: AriClient,
    whisper: WhisperStt, tmp_path: Path,
) -> None:
    port = free_tcp_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "VOICE_AGENT_DATA_DIR": str(tmp_path),
           "VOICE_AGENT_WEB_PORT": str(port), "VOICE_AGENT_WEB_TOKEN": TOKEN}
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with serve_process(env, "--agent", "conversation", "--drain-seconds", "1") as serve, \
            browser_page() as page:
        await eventually(lambda: serve.logged("ready: waiting for calls"), timeout=180,
                         what="serve ready")
        async with httpx.AsyncClient(base_url=base) as http:
            assert (await http.get("/api/live")).status_code == 401  # no token, no calls
            assert (await http.get("/metrics")).status_code == 200  # counts stay open

        await page.goto(base + "/calls")
        assert page.url.startswith(base + "/login"), "the history asked for the token"
        await page.fill("#token", "wrong")
        await page.click("button[type=submit]")
        assert await page.is_visible("#wrong")
        await page.fill("#token", TOKEN)
        await page.click("button[type=submit]")
        await page.wait_for_url(base + "/calls")

        await page.goto(base + "/")
        async with SimPhone(settings.ari_url, settings.ari_user, settings.ari_secret()) as phone:
            call = await phone.dial("18005551234", via="sip", audio=True)
            async with ScriptedCaller(call, whisper) as caller:
                await caller.greeting()
                # the call shows up by itself: the page refreshes from /api/live
                await page.wait_for_selector("#live tbody tr:has-text('techstore')",
                                             timeout=10_000)
                await caller.step(Step("Where is my order one two three four five?"))
                await caller.finish()
                await page.screenshot(path=SHOTS / "live.png")
                assert await page.inner_text("#live tbody tr td.state") in (
                    "listening", "thinking", "speaking")
            await call.hangup()
        await page.wait_for_selector("#live tbody tr.empty", timeout=10_000)  # gone by itself

        reader = HistoryReader(f"sqlite:///{tmp_path / 'history.sqlite3'}")
        rows: list[dict[str, object]] = []

        def stored() -> bool:
            rows[:] = reader.recent(tenant="techstore")
            return bool(rows)

        await eventually(stored, timeout=20, what="the call stored")
        row = rows[0]
        detail = row["detail"]
        assert isinstance(detail, dict)
        turns = [t for t in detail["turns"] if "reply" in t and "speech_end" in t]
        assert turns and "shipped" in turns[-1]["reply"], turns

        await page.goto(base + "/calls?tenant=techstore&number=18005551234")
        listed = await page.inner_text(f"tr[data-id='{row['id']}']")
        assert "techstore" in listed and str(row["outcome"]) in listed
        await page.screenshot(path=SHOTS / "calls.png")

        await page.click(f"a[href='/calls/{row['id']}']")
        await page.wait_for_url(f"{base}/calls/{row['id']}")
        assert await page.inner_text("#session") == row["session_id"]
        assert await page.inner_text("#number") == detail["number"] == "18005551234"
        assert await page.inner_text("#end-reason") == row["end_reason"]
        heard = await page.locator("#turns td.heard").all_inner_texts()
        replies = await page.locator("#turns td.reply").all_inner_texts()
        assert heard == [t["heard"] for t in turns]
        assert [r.split(" (interrupted)")[0].strip() for r in replies][-1].startswith(
            turns[-1]["reply"])
        # who spoke when: a caller bar per heard utterance, an agent bar per reply + greeting
        assert await page.locator("#timeline rect.bar.caller").count() == len(turns)
        assert await page.locator("#timeline rect.bar.agent").count() >= len(turns) + 1
        assert await page.locator("#turns rect.stage").count() >= len(turns)
        await page.screenshot(path=SHOTS / "call.png", full_page=True)

        await page.goto(base + "/latency")
        techstore = page.locator("#latency-techstore")
        assert await techstore.get_attribute("data-n") == str(len(turns))
        await page.screenshot(path=SHOTS / "latency.png", full_page=True)
        assert await serve.stop() == 0
    assert TOKEN.encode() not in serve.output, "the token reached the log"
    await eventually(lambda: _no_channels(inspector), what="no channels left")


async def _no_channels(inspector: AriClient) -> bool:
    return not await inspector.list_channels()
