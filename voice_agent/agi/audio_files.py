"""Audio files shared with Asterisk on the AGI path: names, formats, clean-up.

AGI has no audio stream: the caller's turn is a file Asterisk records
(``RECORD FILE``) and the reply a file it plays (``STREAM FILE``). Both sides
must see the same file under different names, because the dev Asterisk runs in
a chroot: Asterisk uses ``/var/spool/asterisk/voice-agent-agi/X`` while the
agent opens ``<asterisk_root>/var/spool/asterisk/voice-agent-agi/X``.

Format: Asterisk's ``wav`` (8 kHz, 16-bit, mono), which it plays without
transcoding on a telephone channel and records natively. Replies are resampled
from the agent's 16 kHz with the project's :class:`Resampler`; recordings are
brought back to 16 kHz for speech recognition the same way.

Every file of a call is named after the call's session id, so ending a call
removes all its files, including a recording Asterisk was still writing when
the caller hung up.

A full directory cannot hold a turn: Asterisk would record nothing (the caller
seems silent) and the reply could not be written. It is checked before every
new file and raised as :class:`AudioDirectoryFull`, so the call can say sorry
with a sound Asterisk already has and hand the caller on.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from voice_agent.audio.frames import INTERNAL_RATE, Pcm16
from voice_agent.audio.resample import Resampler
from voice_agent.audio.wav import WavFormatError, parse_wav, wav_bytes

log = logging.getLogger(__name__)

#: Sample rate of Asterisk's ``wav`` format.
ASTERISK_WAV_RATE = 8000
#: The name of a per-call file (``CallFiles.new`` plus Asterisk's extension).
CALL_FILE = re.compile(r"[0-9a-f]+-\d{3}-(rec|say)\.wav")
#: Frames quieter than this RMS are not speech (Asterisk's own silence threshold is 256).
SPEECH_RMS = 300.0
#: Less free space than this and the directory counts as full: a 20 s recording
#: is 320 kB, a long reply about as much.
MIN_FREE_BYTES = 2**20
#: What a full (or over-quota) file system says when written to.
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class AudioDirectoryFull(Exception):
    """The shared audio directory has no room for the next recording or reply."""


@dataclass(frozen=True)
class SharedFile:
    """One file as Asterisk names it (no extension, as AGI wants) and as the agent opens it."""

    asterisk_name: str
    host_path: Path


class AudioDirectory:
    """The directory both sides share, under its Asterisk name and its host name."""

    def __init__(self, asterisk_dir: str, host_dir: Path) -> None:
        self.asterisk_dir = PurePosixPath(asterisk_dir)
        self.host_dir = host_dir

    def prepare(self) -> None:
        """Create the directory so that Asterisk (not root) can record into it.

        Its parent must exist: a missing one means the two sides disagree on
        where the directory is (typically Asterisk is not in the chroot), and
        creating it would only make every call fail later, file not found.
        Asterisk owns its spool directory, so when we run as root we hand the
        new directory to the same owner; recordings hold caller speech, so the
        directory is not world-readable.
        """
        if not self.host_dir.parent.is_dir():
            raise FileNotFoundError(
                f"{self.host_dir.parent} does not exist, so {self.host_dir} cannot be where "
                f"Asterisk's {self.asterisk_dir} is; set VOICE_AGENT_AGI_AUDIO_HOST_DIR (when "
                "Asterisk is not in a chroot, to the same path as VOICE_AGENT_AGI_AUDIO_DIR)")
        self.host_dir.mkdir(mode=0o770, exist_ok=True)
        parent = self.host_dir.parent.stat()
        mine = self.host_dir.stat()
        if os.geteuid() == 0 and (mine.st_uid, mine.st_gid) != (parent.st_uid, parent.st_gid):
            os.chown(self.host_dir, parent.st_uid, parent.st_gid)
        removed = self.remove_leftovers()
        if removed:
            log.warning("removed %d call audio file(s) left in %s by a previous run that "
                        "did not end cleanly", removed, self.host_dir)

    def remove_leftovers(self) -> int:
        """Delete per-call files of calls that no longer exist; returns how many.

        A server that was killed mid-call (SIGKILL, power loss) could not run
        its calls' clean-up, and their recordings hold caller speech. At start
        no call of ours is live, so every per-call file in the directory is a
        leftover. Files that do not look like ours are left alone.
        """
        removed = 0
        for path in self.host_dir.iterdir():
            if CALL_FILE.fullmatch(path.name):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def check_space(self) -> None:
        """Raise :class:`AudioDirectoryFull` when under :data:`MIN_FREE_BYTES` are free."""
        try:
            stat = os.statvfs(self.host_dir)
        except OSError:
            return  # cannot tell: the write itself will say
        free = stat.f_bavail * stat.f_frsize
        if free < MIN_FREE_BYTES:
            raise AudioDirectoryFull(
                f"{self.host_dir} is full ({free // 1024} KiB free, "
                f"{MIN_FREE_BYTES // 1024} KiB needed for a turn)")

    def for_call(self, session_id: str) -> CallFiles:
        return CallFiles(self, session_id)


class CallFiles:
    """The files of one call: a fresh name per recording and per reply, all removed at the end."""

    def __init__(self, directory: AudioDirectory, session_id: str) -> None:
        self._dir = directory
        self._prefix = f"{session_id}-"
        self._counter = itertools.count(1)

    def new(self, kind: str) -> SharedFile:
        """A new file name (``kind``: ``rec`` or ``say``); Asterisk adds ``.wav`` itself.

        Raises :class:`AudioDirectoryFull` when the directory cannot hold it.
        """
        self._dir.check_space()
        stem = f"{self._prefix}{next(self._counter):03d}-{kind}"
        return SharedFile(str(self._dir.asterisk_dir / stem), self._dir.host_dir / f"{stem}.wav")

    def remove_all(self) -> int:
        """Delete every file of this call; returns how many there were."""
        removed = 0
        for path in self._dir.host_dir.glob(f"{self._prefix}*"):
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not remove %s: %s", path, exc)
        return removed


def write_reply(path: Path, pcm16k: Pcm16) -> float:
    """Write 16 kHz PCM16 as an Asterisk ``wav`` file; returns its length in seconds.

    A full file system is :class:`AudioDirectoryFull` (the partial file is removed).
    """
    resampler = Resampler(INTERNAL_RATE, ASTERISK_WAV_RATE)
    pcm8k = np.concatenate([resampler.process(pcm16k), resampler.flush()])
    try:
        path.write_bytes(wav_bytes(pcm8k, ASTERISK_WAV_RATE))
    except OSError as exc:
        if exc.errno not in FULL_ERRNOS:
            raise
        path.unlink(missing_ok=True)
        raise AudioDirectoryFull(f"{path.parent} is full: {exc.strerror}") from exc
    return len(pcm8k) / ASTERISK_WAV_RATE


def read_recording(path: Path) -> Pcm16:
    """A recording as 16 kHz PCM16; empty when Asterisk wrote nothing usable."""
    try:
        rate, pcm = parse_wav(path.read_bytes())
    except (OSError, WavFormatError) as exc:
        log.warning("recording %s unreadable: %s", path, exc)
        return np.zeros(0, np.int16)
    if rate == INTERNAL_RATE:
        return pcm
    resampler = Resampler(rate, INTERNAL_RATE)
    return np.concatenate([resampler.process(pcm), resampler.flush()])


def has_speech(pcm16k: Pcm16, frame: int = INTERNAL_RATE // 50) -> bool:
    """True when any 20 ms frame is louder than :data:`SPEECH_RMS`.

    ``RECORD FILE`` also returns after plain silence (the caller said nothing),
    and Whisper invents words for silence ("Thank you."); such turns are skipped.
    """
    usable = len(pcm16k) // frame * frame
    if usable == 0:
        return False
    frames = pcm16k[:usable].astype(np.float64).reshape(-1, frame)
    return bool(np.sqrt(np.mean(frames**2, axis=1)).max() >= SPEECH_RMS)
