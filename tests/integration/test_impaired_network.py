"""Conversations over an impaired media leg: loss, jitter with reordering, delay, an outage.

The impairment is real and in the kernel (:mod:`voice_agent.dev.impair`:
iptables NFQUEUE with seeded randomness) on the agent's own RTP port, both
ways, so Asterisk's packets reach the agent's jitter buffer lost, late and out
of order, and the agent's packets reach the caller the same way. For each
profile the caller's task completes (an order status, heard at the phone), the
agent's jitter buffer counts what the line did, and nothing crashes.
V2V and word error rate per profile are ``voice-agent bench impaired``'s job.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.conftest import TalkTo, assert_nothing_left
from voice_agent.ari.asterisk_ari import AriClient
from voice_agent.dev.impair import PROFILES, Impairment
from voice_agent.dev.sim.conversation import Step, words_heard
from voice_agent.media.rtp_transport import RtpCallAudio

QUESTION = "Where is my order one two three four five?"


@pytest.mark.parametrize("profile", ["loss-3pct", "jitter-40ms", "delay-200ms", "outage-2s"])
async def test_a_conversation_completes_over_an_impaired_line(
    profile: str, talk_to: TalkTo, inspector: AriClient,
) -> None:
    async with talk_to("18005551234", media_transport="rtp") as talk:
        rtp = talk.manager.media.rtp_server if talk.manager.media else None
        assert rtp is not None
        await talk.caller.greeting()
        audio = talk.session.audio
        assert isinstance(audio, RtpCallAudio)
        before = dict(vars(audio.jitter.stats))
        with Impairment(rtp.local_address[1], PROFILES[profile], seed=11) as line:
            await talk.caller.step(Step(QUESTION))
            if line.profile.outage_s:  # the dropout lands in the middle of the reply
                await asyncio.sleep(0.5)
                line.outage()
            [*_, answer] = await talk.caller.finish()
            if line.profile.outage_s:  # the line is back: the caller asks again
                await talk.caller.step(Step(QUESTION))
                [*_, answer] = await talk.caller.finish()
        after = vars(audio.jitter.stats)
        counted = {key: after[key] - before[key] for key in after}
        print(f"{profile}: impairment {vars(line.stats) | {'delays_ms': len(line.stats.delays_ms)}}"
              f"; agent jitter buffer {counted}; heard {answer.heard!r}")

        assert line.stats.packets > 100, "the line carried the call's packets"
        turn = talk.session.record.turns[-1]
        assert "shipped" in turn["reply"], talk.session.record.turns  # understood
        assert words_heard(turn["reply"], answer.heard) >= 0.5, answer  # and heard back
        if line.profile.loss:
            assert line.stats.dropped > 0 and counted["lost"] > 0
        if line.profile.jitter_ms:
            assert line.stats.reordered > 0 and counted["reordered"] + counted["late"] > 0
        if line.profile.delay_ms:
            assert min(line.stats.delays_ms) >= line.profile.delay_ms
        if line.profile.outage_s:
            assert line.stats.dropped > 50 and counted["lost"] + counted["restarts"] > 0
        assert not talk.session.record.errors, talk.session.record.errors
        await talk.call.hangup()
        await assert_nothing_left(inspector, talk.manager)
