"""Secrets given as files (``NAME_FILE``): read into the setting, for every secret setting; problems named in one
line with the variable to fix; other ``*_FILE`` variables left alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync_pipelines.core.secret_files import SECRET_SETTINGS, load_secret_files
from sync_pipelines_tests.deploy.test_deploy_files import SECRET_ENV_VARS, env_example
from sync_pipelines_tests.harness import warm_python


@pytest.mark.integration
def test_every_secret_setting_is_read_from_its_file(tmp_path: Path) -> None:
    environ: dict[str, str] = {}
    for name in SECRET_SETTINGS:
        (tmp_path / name).write_text(f"value of {name}\n")
        environ[f"{name}_FILE"] = str(tmp_path / name)
    assert load_secret_files(environ) == []
    assert {name: environ[name] for name in SECRET_SETTINGS} == {n: f"value of {n}" for n in SECRET_SETTINGS}


@pytest.mark.unit
def test_the_secret_settings_are_those_the_deployment_files_call_secrets() -> None:
    assert set(SECRET_ENV_VARS) <= set(SECRET_SETTINGS)
    _, documented = env_example()
    assert {f"{name}_FILE" for name in SECRET_ENV_VARS} <= documented


@pytest.mark.integration
def test_a_database_url_with_a_password_is_taken_whole(tmp_path: Path) -> None:
    url = "postgresql://zlv:p@ss w/rd%40#?@zlv-db.example.org:5432/zlv"
    (tmp_path / "zlv").write_text(url + "\n")
    environ = {"ZLV_DATABASE_URL_FILE": str(tmp_path / "zlv"), "SSL_CERT_FILE": str(tmp_path / "zlv")}
    assert load_secret_files(environ) == []
    assert environ["ZLV_DATABASE_URL"] == url
    assert "SSL_CERT" not in environ  # not a secret setting: its file is someone else's


@pytest.mark.integration
def test_problems_name_the_variable_and_leave_the_setting_unset(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file")
    (tmp_path / "empty").write_text("")
    environ = {
        "RT_TOKEN_FILE": str(tmp_path / "token"),
        "RT_TOKEN": "from-env",
        "BAKALARI_PASSWORD_FILE": str(tmp_path / "missing"),
        "PORTAILDF_PASSWORD_FILE": str(tmp_path / "empty"),
    }
    problems = load_secret_files(environ)
    assert set(problems) == {
        f"BAKALARI_PASSWORD_FILE: cannot read {tmp_path / 'missing'} (No such file or directory); "
        "check the file and its permissions",
        "RT_TOKEN_FILE: RT_TOKEN is set as well, to another value; set only one of them",
    }
    assert "BAKALARI_PASSWORD" not in environ and "PORTAILDF_PASSWORD" not in environ
    assert environ["RT_TOKEN"] == "from-env"
    # A run worker inherits the value its code server read: the same value is no conflict.
    environ["RT_TOKEN"] = "from-file"
    assert not [p for p in load_secret_files(environ) if p.startswith("RT_TOKEN")]


@pytest.mark.integration
def test_the_code_location_and_the_configuration_check_read_the_files(tmp_path: Path) -> None:
    """A process of the project (here the configuration check) sees RT_TOKEN from RT_TOKEN_FILE alone."""
    (tmp_path / "rt_token").write_text("a-token\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "DAGSTER_HOME": str(tmp_path),
        "SYNC_SYSTEMS": "rt",
        "STUDENTS_DATABASE_URL": f"sqlite:///{tmp_path / 'students.sqlite'}",
        "RT_URL": "https://rt.example.org",
        "RT_TOKEN_FILE": str(tmp_path / "rt_token"),
    }
    shown = warm_python.run(["-m", "sync_pipelines.config_check"], env=env)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    env["RT_TOKEN_FILE"] = str(tmp_path / "missing")
    shown = warm_python.run(["-m", "sync_pipelines.config_check"], env=env)
    assert shown.returncode == 1
    assert f"RT_TOKEN_FILE: cannot read {tmp_path / 'missing'}" in shown.stdout
    assert "RT_TOKEN: is not set" in shown.stdout
