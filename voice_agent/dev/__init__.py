"""Development and measurement: the local Asterisk and its configs, the local LLM
server, the caller simulator and the benchmarks. Production code never imports it.
"""
