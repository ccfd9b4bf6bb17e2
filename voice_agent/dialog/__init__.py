"""Deciding what to say: the rule engine and its tenant skills, text/number/date
parsing, redaction, the tenant tools, the server-LLM dialog and the chunker that
feeds TTS.
"""
