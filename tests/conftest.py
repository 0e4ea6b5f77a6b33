"""Shared pytest wiring: fixtures live in plugin modules owned by their package's tests."""

pytest_plugins = [
    "tests.fixtures_logs",  # first: every session logs at DEBUG and is scanned (P8)
    "tests.fixtures_db",
    "tests.fixtures_asr",
    "tests.fixtures_server",
    "tests.inprocess_support",
    "tests.fixtures_api",
    "tests.fixtures_browser",
    "tests.fixtures_nats",
]
