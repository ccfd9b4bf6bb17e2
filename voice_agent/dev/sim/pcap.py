"""Write RTP streams as pcap files, so sipp can play a known signal into a SIP call.

sipp's ``play_pcap_audio`` replays the RTP payloads of a capture with the
capture's timing; it only needs well-formed Ethernet/IPv4/UDP/RTP records
(addresses and ports are rewritten by sipp, checksums are not checked).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

_GLOBAL_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # LINKTYPE_ETHERNET


def write_rtp_pcap(path: Path, payloads: Sequence[bytes], *, payload_type: int = 0,
                   frame_seconds: float = 0.02, samples_per_frame: int = 160,
                   src_port: int = 6000, dst_port: int = 6002) -> Path:
    """One RTP packet per payload, ``frame_seconds`` apart."""
    records = [_GLOBAL_HEADER]
    for n, payload in enumerate(payloads):
        rtp = struct.pack("!BBHII", 0x80, payload_type, n, n * samples_per_frame, 0x5EED) + payload
        udp = struct.pack("!HHHH", src_port, dst_port, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n & 0xFFFF, 0, 64, 17, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])) + udp
        frame = b"\x00" * 12 + b"\x08\x00" + ip
        t = n * frame_seconds
        records.append(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(frame), len(frame)))
        records.append(frame)
    path.write_bytes(b"".join(records))
    return path
