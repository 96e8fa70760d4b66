"""docker-compose.yml, the Dockerfile and Prometheus's config, checked without a Docker engine.

Every check runs everywhere: the file is validated against the Compose specification's JSON
schema (``data/compose_spec.json``, as shipped in docker-compose 1.29.2, Apache-2.0) and checked
structurally. Where a compose CLI is installed, ``docker compose config -q`` must accept it too.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from stalwart.cli.main import build_parser
from stalwart.testing import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|AUTH|DSN", re.IGNORECASE)
REFERENCE = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*(:?[-?][^}]*)?\}$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def command(service: dict[str, Any]) -> list[str]:
    cmd = service["command"]
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def test_the_four_services_exist_and_each_has_an_image_or_a_build(compose: dict[str, Any]) -> None:
    assert set(services(compose)) == {"redis", "worker", "flower", "prometheus"}
    for name, service in services(compose).items():
        assert "image" in service or "build" in service, name


def test_redis_keeps_an_append_only_file_and_requires_the_password(compose: dict[str, Any]) -> None:
    cmd = command(services(compose)["redis"])
    assert cmd[0] == "redis-server"
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert REFERENCE.match(cmd[cmd.index("--requirepass") + 1])
    assert "${REDIS_PASSWORD" in cmd[cmd.index("--requirepass") + 1]
    assert any(v.endswith(":/data") for v in services(compose)["redis"]["volumes"])


def test_the_worker_scales_and_runs_the_real_app_with_its_ops_port(compose: dict[str, Any]) -> None:
    worker = services(compose)["worker"]
    assert "container_name" not in worker, "a fixed name stops --scale worker=N"
    assert "ports" not in worker, "fixed host ports stop --scale worker=N"
    assert command(worker)[:4] == ["celery", "-A", "workers.app", "worker"]
    env = worker["environment"]
    assert "${REDIS_PASSWORD" in env["STALWART_REDIS_URL"]
    assert env["STALWART_REDIS_URL"].startswith("redis://:${REDIS_PASSWORD")
    assert env["STALWART_OPS_PORT"].isdigit()
    assert env["STALWART_OPS_PORT"] in [str(p) for p in worker["expose"]]
    assert "/healthz" in " ".join(worker["healthcheck"]["test"])


def test_commands_name_modules_and_subcommands_that_exist(compose: dict[str, Any]) -> None:
    scripts = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts.get("stalwart") == "stalwart.cli.main:main"
    for name in ("worker", "flower"):
        cmd = command(services(compose)[name])
        app_module = cmd[cmd.index("-A") + 1]
        module = importlib.import_module(app_module)
        assert hasattr(module, "app"), f"{app_module} has no Celery app"
    assert command(services(compose)["worker"])[:4] == ["celery", "-A", "workers.app", "worker"]
    flower = command(services(compose)["flower"])
    assert flower[:2] == ["stalwart", "flower"]
    parsed = build_parser().parse_known_args(flower[1:])[0]
    assert parsed.func.__module__ == "stalwart.cli.flower"


def test_flower_is_stalwarts_console_with_basic_auth_from_the_environment(compose: dict[str, Any]) -> None:
    flower = services(compose)["flower"]
    assert command(flower)[:2] == ["stalwart", "flower"]
    assert REFERENCE.match(flower["environment"]["FLOWER_BASIC_AUTH"])
    assert not any("basic-auth" in c or "basic_auth" in c for c in command(flower))
    env = flower["environment"]
    assert REFERENCE.match(env["STALWART_CONSOLE_READONLY"])
    assert REFERENCE.match(env["STALWART_CONSOLE_READONLY_AUTH"])


def test_prometheus_finds_every_worker_through_dns(compose: dict[str, Any]) -> None:
    prometheus = services(compose)["prometheus"]
    mounts = [v.split(":") for v in prometheus["volumes"] if v.startswith("./")]
    config_file = next(REPO_ROOT / src for src, dst, *_ in mounts if dst.endswith("prometheus.yml"))
    config = yaml.safe_load(config_file.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "stalwart-workers"]
    (sd,) = job["dns_sd_configs"]
    ops_port = int(services(compose)["worker"]["environment"]["STALWART_OPS_PORT"])
    assert (sd["names"], sd["type"], sd["port"]) == (["worker"], "A", ops_port)
    assert job["metrics_path"] == "/metrics"


def test_no_literal_secrets_only_environment_references(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        for key, val in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert REFERENCE.match(str(val)), f"{name}.{key} must be a ${{...}} reference"
    text = COMPOSE.read_text()
    assert not re.search(r"redis://:[^$\s]", text), "a literal password in a Redis URL"
    required = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    assert {"REDIS_PASSWORD", "FLOWER_BASIC_AUTH"} <= required, "compose refuses to start without them"


def test_the_dockerfile_installs_the_package_and_runs_the_worker_unprivileged() -> None:
    lines = [ln.strip() for ln in DOCKERFILE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0].startswith("FROM python:3.")
    assert any(ln.startswith("RUN pip install /app") for ln in lines)
    assert any(ln.startswith("COPY . /app") for ln in lines)
    assert any(ln.startswith("USER ") and "root" not in ln for ln in lines)
    assert 'CMD ["celery", "-A", "workers.app", "worker"' in DOCKERFILE.read_text()
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv"} <= set(ignored)
    for needed in ("pyproject.toml", "platform/stalwart", "workers/app.py", "tasks"):
        assert (REPO_ROOT / needed).exists(), needed


def compose_cli() -> list[str] | None:
    """``docker compose`` or ``docker-compose``, whichever is installed and works offline."""
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) is None:
            continue
        probe = subprocess.run([*cmd, "version"], capture_output=True, timeout=30, check=False)
        if probe.returncode == 0:
            return cmd
    return None


def test_the_file_is_valid_under_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads((Path(__file__).parent / "data" / "compose_spec.json").read_text())
    errors = sorted(jsonschema.Draft201909Validator(schema).iter_errors(compose), key=str)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_a_compose_cli_where_installed_accepts_the_file(tmp_path: Path) -> None:
    cli = compose_cli()
    if cli is None:
        return  # no compose CLI on this machine: the schema test above is the validation
    env = {**os.environ, "REDIS_PASSWORD": "0123abcd", "FLOWER_BASIC_AUTH": "ops:x",
           "DOCKER_CONFIG": str(tmp_path)}
    result = subprocess.run([*cli, "-f", str(COMPOSE), "config", "-q"], capture_output=True,
                            text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    unset = {k: v for k, v in env.items() if k not in {"REDIS_PASSWORD", "FLOWER_BASIC_AUTH"}}
    refused = subprocess.run([*cli, "-f", str(COMPOSE), "config", "-q"], capture_output=True,
                             text=True, env=unset, timeout=60, check=False)
    assert refused.returncode != 0, "compose must refuse to start without the secrets"
