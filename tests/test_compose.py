"""docker-compose.yml structure (no Docker engine runs here): auth, volumes, localhost ports, GPU worker, env file."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_volumes():
    spec = compose()
    assert {"mongodb", "postgres", "prefect-server", "worker", "worker-gpu"} <= set(spec["services"])
    assert {"mongodb-data", "postgres-data"} <= set(spec["volumes"])
    assert any(v.startswith("mongodb-data:") for v in spec["services"]["mongodb"]["volumes"])


def test_every_published_port_is_localhost_only():
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"


def _interpolated() -> list[str]:
    """Every ${...} expression in the compose file."""
    return re.findall(r"(?<!\$)\$\{([^}]*)\}", (ROOT / "docker-compose.yml").read_text())  # $$ escapes


def test_every_secret_is_required_not_defaulted_to_empty():
    required = {expr.split(":?")[0] for expr in _interpolated() if ":?" in expr}
    secrets = {
        "MONGO_USER",
        "MONGO_PASSWORD",
        "MONGO_APP_USER",
        "MONGO_APP_PASSWORD",
        "POSTGRES_USER",
        "POSTGRES_PASSWORD",
        "PREFECT_API_AUTH_STRING",
    }
    assert secrets <= required
    for expr in _interpolated():
        name = re.split(r"[:?-]", expr)[0]
        assert name not in secrets or ":?" in expr, f"${{{expr}}} lets compose start with {name} empty"
    example = (ROOT / ".env.example").read_text()
    for variable in secrets:
        assert f"{variable}=" in example
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_workers_use_an_application_user_with_readwrite_on_the_crysloop_database_only():
    spec = compose()
    mongo = spec["services"]["mongodb"]
    assert mongo["environment"]["MONGO_INITDB_ROOT_PASSWORD"].startswith("${MONGO_PASSWORD:?")
    init = next(v for v in mongo["volumes"] if "docker-entrypoint-initdb.d" in v)
    script = (ROOT / init.split(":")[0]).read_text()
    assert "createUser" in script and 'role: "readWrite", db: dbName' in script and "root" not in script.split("//")[0]
    for name in ("worker", "worker-gpu"):
        service = spec["services"][name]
        env = service["environment"]
        uri = env["CRYSLOOP_MONGODB_URI"]
        assert "${MONGO_APP_USER:?" in uri and "${MONGO_APP_PASSWORD:?" in uri and "authSource=admin" not in uri
        assert "MONGO_PASSWORD" not in str(env) and "env_file" not in service, "workers never see the root password"


def test_prefect_api_requires_auth_for_server_and_clients():
    spec = compose()
    server = spec["services"]["prefect-server"]["environment"]
    assert server["PREFECT_SERVER_API_AUTH_STRING"].startswith("${PREFECT_API_AUTH_STRING:?")
    for name in ("worker", "worker-gpu"):
        assert (
            spec["services"][name]["environment"]["PREFECT_API_AUTH_STRING"] == server["PREFECT_SERVER_API_AUTH_STRING"]
        )


def test_prefect_server_uses_postgres_and_workers_point_at_it():
    spec = compose()
    server = spec["services"]["prefect-server"]
    assert server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    for worker in ("worker", "worker-gpu"):
        env = spec["services"][worker]["environment"]
        assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"


def test_gpu_worker_reserves_an_nvidia_device_behind_a_profile():
    gpu = compose()["services"]["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert gpu["environment"]["CRYSLOOP_DEVICE"] == "cuda"
