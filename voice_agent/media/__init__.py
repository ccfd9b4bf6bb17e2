"""Call audio transport: per-call audio queues, RTP (packet, jitter buffer, pacer),
the RTP and WebSocket externalMedia transports, and the one media clock.

Knows bytes and frames, not calls, tenants or Asterisk REST.
"""
