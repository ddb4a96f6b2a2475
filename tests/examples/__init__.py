"""Tests of the examples under examples/ (agents in other languages)."""
