"""systemd service notifications (``Type=notify``): READY when ARI is connected, STOPPING on exit.

So a unit with ``Type=notify`` is "started" only once the agent can take calls,
and anything else that starts the agent (the media benchmark) can wait for the
same signal instead of guessing from Asterisk's side, where an app left
registered by a previous run looks ready but rejects calls. The protocol is
one datagram on the unix socket named by ``NOTIFY_SOCKET`` (``@`` = abstract
namespace); it is small enough that a dependency would cost more than it saves.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to the service manager; False if there is none."""
    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("could not notify the service manager at %s: %s", path, exc)
        return False
    return True
