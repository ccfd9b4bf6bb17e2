"""Speech providers: voice activity detection, speech-to-text, text-to-speech.

Each module defines a small provider protocol plus its implementations. Nothing
is re-exported here on purpose: importing one provider must not load another's
model runtime (onnxruntime, CTranslate2, piper) into a process that never uses it.
"""
