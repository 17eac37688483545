"""Values every test agrees on."""

from __future__ import annotations

from datetime import UTC, datetime

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)  # the tests' clock: recordings are made before
TOKEN = "s3cr3t-T0KEN-value"  # the source's auth token: a test asserts it never reaches a log
DAY = 86400.0  # seconds
