"""Each organisation's quick start (docs/quickstart.md) run as it is written.

For each section, its ``export VAR=value`` block is the whole of the sync's environment (a ``change-me`` or
``example.`` value replaced by the address or secret of the test's system), and its dry-run command line runs
as written, from the repository's root, in a shell: the run must succeed, print the plan's count line in the
form the section shows, save its plan, and leave the target as it was. A variable the code no longer reads, a
missing one, or a changed command or output fails here. The district's runs against a real RT 5 with a token
holding exactly the rights the section names; the school's and ZLV's against the stand-in servers.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from devkit.request_tracker import RequestTracker5, RequestTrackerMissing
from devkit.sandbox.databases import seed_students
from devkit.sandbox.sample_data import generate_students
from sync_pipelines.core.database import create_database_engine
from sync_pipelines.defs.syncs import SYNCS
from sync_pipelines_tests.harness import warm_python
from sync_pipelines_tests.harness.world import fresh_definitions, process_environment
from sync_pipelines_tests.operations.sync_worlds import NewDatabase, bakalari_world, user_kinds_world

REPOSITORY = Path(__file__).resolve().parents[2]
QUICKSTART = REPOSITORY / "docs" / "quickstart.md"
# The rights "The RT user and token" names; the district's quick start must name them too.
RT_RIGHTS = ("SeeCustomField", "ModifyCustomField", "AdminUsers")
# Prefixes of the project's variables: none of them leaks from the test's own environment into a quick start's run.
PROJECT_PREFIXES = ("SYNC_", "RT_", "STUDENTS_", "BAKALARI_", "EDURPG_", "PORTAILDF_", "ZLV_", "USER_KIND_")
PLAN_LINE = re.compile(
    r"(?P<asset>\w+) \(dry run\): (?P<create>\d+) to create, (?P<update>\d+) to update, (?P<unchanged>\d+) "
    r"unchanged, (?P<skip>\d+) skipped \((?P<reasons>[^)]*)\)"
)


@dataclass(frozen=True)
class QuickStart:
    """One organisation's section of docs/quickstart.md, as an operator follows it."""

    heading: str
    text: str
    variables: dict[str, str]
    dry_run: str

    def step(self, number: int) -> str:
        """The text of step ``number`` (``### <number>. ...``) up to the next step."""
        match = re.search(rf"^### {number}\. .*?(?=^### |\Z)", self.text, re.MULTILINE | re.DOTALL)
        assert match, f"{self.heading}: no step '### {number}.' in {QUICKSTART.name}"
        return match.group(0)


def shell_blocks(text: str) -> list[list[str]]:
    """The non-empty lines of each fenced ```sh block."""
    return [
        [line.strip() for line in block.splitlines() if line.strip()]
        for block in re.findall(r"^```sh\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    ]


def quick_start(heading_start: str) -> QuickStart:
    """The section whose ``## `` heading starts with ``heading_start``: its variables (step 2's block) and its
    dry-run command (step 4's block)."""
    sections = re.findall(r"^(## .*?)(?=^## |\Z)", QUICKSTART.read_text(), re.MULTILINE | re.DOTALL)
    [text] = [section for section in sections if section.startswith(f"## {heading_start}")]
    section = QuickStart(text.splitlines()[0], text, {}, "")
    [variables_block, *_] = shell_blocks(section.step(2))
    variables = {}
    for line in variables_block:
        [name_value] = shlex.split(line.removeprefix("export "))
        assert line.startswith("export ") and "=" in name_value, f"{section.heading}: not an export: {line}"
        name, value = name_value.split("=", 1)
        variables[name] = value
    [[dry_run]] = shell_blocks(section.step(4))
    return replace(section, variables=variables, dry_run=dry_run)


def variables_the_code_reads() -> set[str]:
    """Every upper-case string literal of the code location, and the variables it builds from a job's name."""
    names: set[str] = set()
    for path in (REPOSITORY / "sync_pipelines").rglob("*.py"):
        names.update(re.findall(r"[\"']([A-Z][A-Z0-9_]+)[\"']", path.read_text()))
    return names | {spec.cron_variable for spec in SYNCS}


def is_placeholder(value: str) -> bool:
    return "change-me" in value or "example." in value


def run_environment(section: QuickStart, stand_ins: dict[str, str], home: Path) -> dict[str, str]:
    """The section's variables, placeholders replaced by ``stand_ins``, over a clean environment."""
    missing = sorted(set(stand_ins) - set(section.variables))
    assert not missing, f"{section.heading}: the variables block lacks {missing}, which the sync needs"
    unfilled = sorted(n for n, v in section.variables.items() if is_placeholder(v) and n not in stand_ins)
    assert not unfilled, f"{section.heading}: the test has no stand-in for {unfilled}"
    unknown = sorted(set(section.variables) - variables_the_code_reads())
    assert not unknown, f"{section.heading}: the code reads no variable named {unknown}"
    base = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(PROJECT_PREFIXES) and name != "DAGSTER_HOME"
    }
    base["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}"
    return {**base, "DAGSTER_HOME": str(home), "PYTHONWARNINGS": "ignore", **section.variables, **stand_ins}


def run_command(command: str, env: dict[str, str], again: bool = False) -> tuple[int, str]:
    """``command`` as written, in a shell at the repository's root: its exit code and output. ``again``: a
    command the test already ran as written, run once more with other settings (a ``python -m`` or ``dagster``
    command line, forked from the warm interpreter of ``harness/warm_python.py``)."""
    if again:
        words = shlex.split(command)
        argv = ["-m", *words] if words[0] == "dagster" else words[1:]
        assert argv[0] == "-m" and words[0] in ("dagster", "python"), command
        completed = warm_python.run(argv, env=env, cwd=REPOSITORY, timeout=120)
    else:
        completed = subprocess.run(
            ["bash", "-c", command], cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=120
        )
    return completed.returncode, completed.stdout + completed.stderr


def assert_configuration_checks(section: QuickStart, env: dict[str, str]) -> None:
    """Step 3's command as written: ok with the documented variables; with one of them missing, exit 1 and
    that variable named in one line."""
    [[check]] = shell_blocks(section.step(3))
    exit_code, output = run_command(check, env)
    assert exit_code == 0 and "configuration ok" in output, f"{check} exited {exit_code}:\n{output[-2000:]}"
    required = sorted(
        name for name in section.variables if any(name in spec.required_variables for spec in SYNCS)
    )
    assert required, f"{section.heading}: step 2 sets none of its system's required variables"
    missing = required[0]
    exit_code, output = run_command(check, {k: v for k, v in env.items() if k != missing}, again=True)
    assert exit_code == 1 and any(line.startswith(missing) for line in output.splitlines()), output[-2000:]


def run_dry_run(section: QuickStart, env: dict[str, str]) -> str:
    """The section's configuration check (step 3), then its dry-run command line, which must succeed."""
    assert_configuration_checks(section, env)
    exit_code, output = run_command(section.dry_run, env)
    assert exit_code == 0, f"{section.dry_run} exited {exit_code}:\n{output[-4000:]}"
    return output


def assert_refused_secret_is_named(section: QuickStart, env: dict[str, str], secret: str) -> None:
    """With a wrong ``secret``, the dry run fails naming the setting step 4 gives as the first failure."""
    found = re.search(r"A failure is one line naming the setting: `([^`]+)`", section.step(4))
    assert found, f"{section.heading}: step 4 does not say which setting a failure names"
    assert secret in found.group(1), found.group(0)
    exit_code, output = run_command(section.dry_run, {**env, secret: "not-the-right-secret"}, again=True)
    assert exit_code != 0, output[-4000:]
    assert found.group(1) in output, f"{found.group(1)!r} not named in:\n{output[-4000:]}"
    assert "not-the-right-secret" not in output


def assert_output_as_documented(section: QuickStart, job: str, output: str) -> None:
    """The plan's count line, its table and its saved id are printed, in the form step 4 shows them."""
    asset = next(spec.target for spec in SYNCS if spec.job == job)
    documented = [m for m in PLAN_LINE.finditer(section.step(4)) if m.group("asset") == asset]
    assert documented, f"{section.heading}: step 4 shows no '{asset} (dry run): ...' count line"
    printed = [m for m in PLAN_LINE.finditer(output) if m.group("asset") == asset]
    assert printed, f"no '{asset} (dry run): ...' count line in:\n{output[-4000:]}"
    assert int(printed[-1].group("create")) + int(printed[-1].group("update")) > 0, printed[-1].group(0)
    for line in (f"plan of {asset} (dry run, nothing written):", f"plan of {asset} saved for review as"):
        assert line in section.step(4), f"{section.heading}: step 4 does not show {line!r}"
        assert line in output, f"{line!r} not printed"


def assert_schedule_follows_the_cron_variable(section: QuickStart, job: str, env: dict[str, str]) -> None:
    """Step 2 keeps the sync's schedule stopped; step 5 (the cron variable dropped) turns it on."""
    spec = next(spec for spec in SYNCS if spec.job == job)
    assert section.variables.get(spec.cron_variable) == "off", (
        f"{section.heading}: no {spec.cron_variable}=off"
    )
    assert spec.schedule is not None and spec.schedule.name in section.step(5)
    assert spec.cron_variable in section.step(5)
    for environment, status in (
        (env, dg.DefaultScheduleStatus.STOPPED),
        ({k: v for k, v in env.items() if k != spec.cron_variable}, dg.DefaultScheduleStatus.RUNNING),
    ):
        with process_environment(environment), fresh_definitions() as defs:
            assert defs.resolve_schedule_def(spec.schedule.name).default_status == status


@pytest.fixture(scope="module")
def real_rt() -> Iterator[tuple[RequestTracker5, str]]:
    """A real RT 5 with the user custom fields and a privileged sync user holding only the documented rights."""
    try:
        rt = RequestTracker5(workers=2, bcrypt_cost=4)
    except RequestTrackerMissing as exc:
        pytest.skip(str(exc))
    rt.start()
    try:
        rt.create_user_fields("Grade", "Student ID")
        yield rt, rt.create_token("sync-bot", rights=RT_RIGHTS)
    finally:
        rt.stop()


@pytest.mark.e2e
def test_the_districts_quick_start_runs_against_a_real_rt(real_rt, make_pg_url: NewDatabase, tmp_path: Path):
    rt, token = real_rt
    section = quick_start("The school district")
    step_one = section.step(1)
    assert all(f"`{right}`" in step_one for right in RT_RIGHTS) and "privileged" in step_one
    # Students whose RT users hold nothing yet, the right values, or stale ones.
    sample = [s for s in generate_students(24, seed=5) if s.rt_user_id is not None]
    users = [
        (
            f"qs-{s.student_id.lower()}",
            f"qs-{n}@example.test",
            [{}, {"Grade": "12", "Student ID": "old"}, {"Grade": s.grade, "Student ID": s.student_id}][n % 3],
        )
        for n, s in enumerate(sample)
    ]
    ids = rt.create_users(users)
    students = [replace(s, rt_user_id=user_id) for s, user_id in zip(sample, ids, strict=True)]
    students_url = make_pg_url()
    seed_students(students_url, students, schema="django")
    stand_ins = {"STUDENTS_DATABASE_URL": students_url, "RT_URL": rt.url, "RT_TOKEN": token}
    env = run_environment(section, stand_ins, tmp_path)

    before = rt.user_fields(ids)
    output = run_dry_run(section, env)
    assert_output_as_documented(section, "rt_user_sync", output)
    assert_refused_secret_is_named(section, env, "RT_TOKEN")
    assert rt.user_fields(ids) == before
    assert not [entry for entry in rt.access_log_entries() if entry.method == "PUT"]
    assert_schedule_follows_the_cron_variable(section, "rt_user_sync", env)


def edurpg_tables(url: str) -> Callable[[], list[int]]:
    engine = create_database_engine(url, "EDURPG_DATABASE_URL")

    def counts() -> list[int]:
        with engine.connect() as connection:
            return [
                connection.execute(sa.text(f'SELECT count(*) FROM "{table}"')).scalar_one()
                for table in ("Class", "Subject", "User", "Enrollment", "ExternalRef", "SystemLog")
            ]

    return counts


@pytest.mark.e2e
def test_the_schools_quick_start_runs_against_the_stand_ins(make_pg_url: NewDatabase, tmp_path: Path):
    section = quick_start("The Czech school")
    with contextlib.ExitStack() as stack:
        world = bakalari_world(make_pg_url, stack, size=12)
        env = run_environment(section, world.env, tmp_path)
        counts = edurpg_tables(world.databases["edurpg"])
        before, stale = counts(), world.stale()
        output = run_dry_run(section, env)
        assert_output_as_documented(section, "bakalari_sync", output)
        assert_refused_secret_is_named(section, env, "BAKALARI_PASSWORD")
        assert counts() == before and world.stale() == stale
    assert_schedule_follows_the_cron_variable(section, "bakalari_sync", env)


@pytest.mark.e2e
def test_zlvs_quick_start_runs_against_the_stand_ins(make_pg_url: NewDatabase, tmp_path: Path):
    section = quick_start("Zéro Logement Vacant")
    with contextlib.ExitStack() as stack:
        world = user_kinds_world(make_pg_url, stack, size=40)
        env = run_environment(section, world.env, tmp_path)
        engine = create_database_engine(world.databases["zlv"], "ZLV_DATABASE_URL")
        stack.callback(engine.dispose)
        query = sa.text("SELECT id, kind, updated_at FROM users ORDER BY id")
        with engine.connect() as connection:
            before = connection.execute(query).all()
        output = run_dry_run(section, env)
        assert_output_as_documented(section, "user_kind_sync", output)
        assert_refused_secret_is_named(section, env, "PORTAILDF_PASSWORD")
        with engine.connect() as connection:
            assert connection.execute(query).all() == before
    assert_schedule_follows_the_cron_variable(section, "user_kind_sync", env)


def heading_anchors(markdown: Path) -> set[str]:
    """The anchors GitHub gives a file's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", markdown.read_text(), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


@pytest.mark.unit
def test_the_quick_starts_links_and_paths_lead_somewhere():
    """Each link between the README, docs/quickstart.md and deploy/README.md reaches a heading, and each file the
    quick starts name exists."""
    for source in (REPOSITORY / "README.md", QUICKSTART):
        links = re.findall(r"\]\(([^)#]*\.md)#([^)]+)\)", source.read_text())
        for path, anchor in links:
            target = (source.parent / path).resolve()
            if target == QUICKSTART or source == QUICKSTART:
                assert anchor in heading_anchors(target), f"{source.name}: no heading for {path}#{anchor}"
    assert "(docs/quickstart.md)" in (REPOSITORY / "README.md").read_text()
    named = set(re.findall(r"`((?:deploy|examples)/[\w./-]+)`", QUICKSTART.read_text()))
    assert {"deploy/systemd/", "deploy/docker-compose.yml", "deploy/helm/values.yaml"} <= named
    # deploy/.env is the operator's copy of deploy/.env.example.
    missing = sorted(path for path in named - {"deploy/.env"} if not (REPOSITORY / path).exists())
    assert not missing, f"{QUICKSTART.name} names files that do not exist: {missing}"
