"""Shared test configuration: which backend the integration tests talk to."""

from __future__ import annotations

import os

import pytest


def selected_backend() -> str:
    return os.environ.get("JOBPROV_TEST_BACKEND", "native")


def pytest_report_header(config: pytest.Config) -> str:
    backend = selected_backend()
    what = "Tansu broker started by the fixtures" if backend == "native" else "testcontainers (Docker)"
    return f"jobprov test backend: {backend} ({what})"
