"""MAOS."""
