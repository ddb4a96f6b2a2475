"""Test harnesses: local fakes of external services used by the MAOS test suite."""
