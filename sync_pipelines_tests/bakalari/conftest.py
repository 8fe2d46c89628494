"""A sample school behind a Bakaláři sandbox, and EduRPG on PostgreSQL as the students left it after logging in.

EduRPG's schema is Prisma's own (``devkit.sandbox.edurpg.create_prisma_schema``: one ``prisma db push`` per server
into a template database, each test's database a copy of it); without Node.js or the Prisma harness's npm install
the tests that need it are skipped, saying which.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devkit.prisma import missing_reason
from devkit.sandbox.bakalari import BakalariSandbox, SampleSchool, generate_school
from devkit.sandbox.edurpg import seed_edurpg
from devkit.sandbox.server import ThreadedSandbox

SIZE = 40
SEED = 5


@pytest.fixture
def school() -> SampleSchool:
    return generate_school(SIZE, SEED)


@pytest.fixture
def bakalari(school: SampleSchool) -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox(BakalariSandbox(school)) as server:
        yield server


@pytest.fixture
def edurpg_url(pg_url: str, school: SampleSchool) -> str:
    """EduRPG's Prisma schema on a fresh PostgreSQL database, holding the students and their refresh tokens."""
    require_prisma()
    seed_edurpg(pg_url, school)
    return pg_url


def require_prisma() -> None:
    """Skip, saying why, when EduRPG's schema cannot be made by Prisma here (Node.js or its npm install missing)."""
    reason = missing_reason()
    if reason is not None:
        pytest.skip(f"EduRPG's schema is made by Prisma, unavailable here: {reason}")
