"""A flood of junk datagrams at the agent's RTP socket, during a live conversation.

The one RTP socket serves every call and routes by source address: datagrams
from anywhere but a live call's Asterisk endpoint are dropped and counted, so a
flood must not take a call down or be mistaken for its audio. The share of late
media ticks during the flood is printed here; the reported figure comes from
``voice-agent bench impaired --profile flood-10k`` (the flood from its own
process), never a pass/fail criterion: this machine's timing is noisy.
"""

from __future__ import annotations

import asyncio
import threading
import time

from tests.integration.conftest import TalkTo, assert_nothing_left
from voice_agent.ari.asterisk_ari import AriClient
from voice_agent.dev.impair import flood
from voice_agent.dev.sim.conversation import Step, words_heard

FLOOD = 50_000


async def test_a_junk_flood_does_not_disturb_a_live_call(
    talk_to: TalkTo, inspector: AriClient,
) -> None:
    async with talk_to("18005551234", media_transport="rtp") as talk:
        await talk.caller.greeting()
        rtp = talk.manager.media.rtp_server if talk.manager.media else None
        assert rtp is not None, "the rtp transport is running"
        before_unknown, before_ticks, before_late = (
            rtp.stats.unknown_source, rtp.clock.stats.ticks, rtp.clock.stats.late)
        audio = talk.session.audio
        assert audio is not None
        frames_in = audio.stats.frames_in  # the call's own audio, counted
        stop = threading.Event()
        flooding = asyncio.create_task(asyncio.to_thread(
            flood, rtp.local_address, FLOOD, 5.0, stop))
        try:
            await talk.caller.step(Step("Where is my order one two three four five?"))
            [*_, answer] = await talk.caller.finish()
            sent = await flooding
        finally:
            stop.set()
            await asyncio.gather(flooding, return_exceptions=True)
        arrived = rtp.stats.unknown_source - before_unknown
        ticks = rtp.clock.stats.ticks - before_ticks
        late = rtp.clock.stats.late - before_late
        print(f"flood: sent {sent}, {arrived} reached the socket and were dropped as unknown "
              f"source; late ticks meanwhile {late}/{ticks} ({late / max(1, ticks):.2%})")
        assert sent == FLOOD
        assert arrived > FLOOD // 10, "the flood reached the agent's socket (the path ran)"
        turn = talk.session.record.turns[-1]
        assert "shipped" in turn["reply"], turn  # the caller was understood through it
        assert words_heard(turn["reply"], answer.heard) >= 0.5, answer
        # none of the junk was taken for the call's audio: the call got only its own frames,
        # ~50 a second, not thousands
        seconds = time.monotonic() - talk.call.answered_at
        assert audio.stats.frames_in - frames_in <= 60 * seconds
        await talk.call.hangup()
        await assert_nothing_left(inspector, talk.manager)
