"""The ARI side: REST + events client, the Stasis app and session manager, one
call session per answered channel, externalMedia attachment and playback.
"""
