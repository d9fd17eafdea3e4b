"""Benchmarks (run as scripts; see each module docstring)."""
