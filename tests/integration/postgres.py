"""A throwaway PostgreSQL server from Debian's packages, for the call-history tests.

``initdb`` refuses to run as root, so the cluster belongs to the ``postgres``
user the Debian package creates (``runuser``, no sudo needed); it listens on a
free loopback port with trust authentication and lives in a temporary directory.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

from voice_agent.dev.model_servers import free_tcp_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} not found: bash scripts/install.sh "
                           "installs the postgresql package")
    return found[-1]


def _as_postgres(*command: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else [*command]


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A running server for the block; yields a SQLAlchemy URL of an empty database."""
    root = tempfile.mkdtemp(prefix="va-pg-")
    data = os.path.join(root, "data")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = free_tcp_port()
    subprocess.run(_as_postgres(_bin("initdb"), "-D", data, "--auth=trust", "-U", "postgres"),
                   check=True, capture_output=True)
    subprocess.run(_as_postgres(_bin("pg_ctl"), "-D", data, "-w", "-l",
                                os.path.join(root, "log"), "-o",
                                f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"),
                   check=True, capture_output=True)
    try:
        subprocess.run(_as_postgres(_bin("createdb"), "-h", "127.0.0.1", "-p", str(port),
                                    "-U", "postgres", "history"),
                       check=True, capture_output=True)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/history"
    finally:
        subprocess.run(_as_postgres(_bin("pg_ctl"), "-D", data, "-m", "immediate", "stop"),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
