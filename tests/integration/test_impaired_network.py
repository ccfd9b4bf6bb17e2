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
import contextlib
import socket
import time

import pytest

from tests.integration.conftest import TalkTo, assert_nothing_left
from voice_agent.ari.asterisk_ari import AriClient
from voice_agent.dev.impair import PROFILES, Impairment, Profile
from voice_agent.dev.sim.conversation import Step, words_heard
from voice_agent.media.rtp_transport import RtpCallAudio

QUESTION = "Where is my order one two three four five?"


def _through_the_line(profile: Profile, count: int = 400, outage_at: int | None = None
                      ) -> tuple[list[int], Impairment]:
    """Send ``count`` numbered datagrams through an impaired port; what arrived, in order."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind(("127.0.0.1", 0))
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2**20)
        rx.settimeout(1.0)
        with Impairment(rx.getsockname()[1], profile, seed=5) as line:
            for i in range(count):
                if i == outage_at:
                    line.outage(0.2)
                tx.sendto(i.to_bytes(4, "big") + bytes(168), rx.getsockname())
                time.sleep(0.002)
            arrived = []
            with contextlib.suppress(TimeoutError):
                while True:
                    arrived.append(int.from_bytes(rx.recv(2048)[:4], "big"))
    return arrived, line


def test_the_line_loses_reorders_delays_and_cuts_packets_as_its_profile_says() -> None:
    """The impairment itself, on a bare UDP port (the seeds make the counts repeatable)."""
    clean, _ = _through_the_line(PROFILES["clean"])
    assert clean == list(range(400))
    lossy, line = _through_the_line(PROFILES["loss-3pct"])
    assert 4 <= line.stats.dropped <= 24 and len(lossy) == 400 - line.stats.dropped
    assert lossy == sorted(lossy)
    jittery, line = _through_the_line(PROFILES["jitter-40ms"])
    assert sorted(jittery) == list(range(400)) and jittery != sorted(jittery)
    assert line.stats.reordered > 0
    _, line = _through_the_line(PROFILES["delay-200ms"])
    assert min(line.stats.delays_ms) == 200.0
    cut, line = _through_the_line(PROFILES["outage-2s"], outage_at=100)
    missing = sorted(set(range(400)) - set(cut))
    assert missing and missing[0] == 100 and len(missing) == line.stats.dropped > 20


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
