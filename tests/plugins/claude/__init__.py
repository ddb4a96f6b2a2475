"""Tests of the Claude plugin (against the local fake Messages API only)."""
