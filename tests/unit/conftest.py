"""The unit tier runs without a database: asking for one is a test in the wrong tier."""

from __future__ import annotations

import pytest


@pytest.fixture
def database_url() -> str:
    pytest.fail("a unit test takes no database: it belongs in tests/integration", pytrace=False)
