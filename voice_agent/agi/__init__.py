"""The FastAGI fallback: protocol, channel, audio files, the sequential turn loop
and the server. Used when no ARI agent is connected.
"""
