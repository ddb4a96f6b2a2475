"""Tests of first-party plugins."""
