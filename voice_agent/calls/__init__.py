"""What a call is, independent of how it reached us (ARI or AGI).

The call record and its states, admission and drain (one copy for both entry
points), and the small protocol an agent needs from a call. The ARI and AGI
layers implement it; the conversation layer depends on it, not on ARI.
"""
