"""The operator's view of calls: live calls, call history, a per-call timeline.

Served by the same aiohttp server as ``/metrics`` (:mod:`voice_agent.web`),
behind a token (:mod:`voice_agent.dashboard.auth`). Pages are rendered on the
server with Jinja2; one small script refreshes the live calls. Every asset is
served from this package (no CDN): the dashboard works on a PBX with no
internet.
"""
