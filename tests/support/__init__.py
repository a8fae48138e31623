"""Helpers shared by gpubox's test suites (tests/ is on pytest's pythonpath)."""
