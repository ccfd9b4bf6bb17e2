"""``voice-agent``: serve calls (``serve``, ``agi``), write tenants (``tenants``,
``chat``), and the development commands (the local Asterisk, test calls, the
demo, benchmarks).

Importing the command modules registers their commands on :data:`app`,
production commands first so ``--help`` lists them first.
"""

from voice_agent.cli import serve

# isort: split
from voice_agent.cli import tenants

# isort: split
from voice_agent.cli import devtools
from voice_agent.cli.common import app

__all__ = ["app", "devtools", "serve", "tenants"]
