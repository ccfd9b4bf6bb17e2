"""Language models: streamed chat completions and the text chunking that feeds TTS.

``openai_compat`` holds the provider protocol (:class:`LanguageModel`), the
OpenAI-compatible HTTP client and the fallback chain; ``chunker`` turns the
streamed text into speakable pieces. Nothing is re-exported here, so importing
the pure chunker never pulls in an HTTP stack.
"""
