"""Model providers behind small async protocols: VAD, STT, TTS and the LLM client,
embedded and server-backed, with one error family and one HTTP lifecycle.

Nothing is re-exported here on purpose: importing one provider must not load
another's model runtime (onnxruntime, CTranslate2, piper) into a process that
never uses it.
"""
