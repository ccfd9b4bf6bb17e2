"""``python -m voice_agent.cli``: the same as the ``voice-agent`` command."""

from voice_agent.cli import app

app()
