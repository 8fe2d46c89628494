"""A sample school behind a Bakaláři sandbox, and EduRPG on PostgreSQL as the students left it after logging in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
    seed_edurpg(pg_url, school)
    return pg_url
