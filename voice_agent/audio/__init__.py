"""Audio at the edges: frame format, G.711, resamplers (scalar and batched), WAV, levels.

The bottom layer: numpy only, nothing of ours. Everything above speaks PCM16 mono
16 kHz in 20 ms frames and converts only here.
"""
