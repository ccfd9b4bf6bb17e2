"""The conversation on a live call: the turn loop, barge-in policy, spoken-reply
tracking, and the echo agent. Depends on the calls protocol, not on ARI.
"""
