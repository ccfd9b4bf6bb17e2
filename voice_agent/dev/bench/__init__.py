"""Benchmarks: real calls through Asterisk, figures written to bench/results/ (JSON + PNG)."""
