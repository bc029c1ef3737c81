"""docker-compose.yml structure (no Docker engine runs here): auth, volumes, localhost ports, GPU worker, env file."""

from __future__ import annotations

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


def test_mongodb_requires_authentication_and_secrets_come_from_env_file():
    spec = compose()
    mongo = spec["services"]["mongodb"]
    assert mongo["environment"]["MONGO_INITDB_ROOT_PASSWORD"] == "${MONGO_PASSWORD}"
    uri = spec["services"]["worker"]["environment"]["CRYSLOOP_MONGODB_URI"]
    assert "${MONGO_USER}:${MONGO_PASSWORD}@mongodb" in uri and "authSource=admin" in uri
    example = (ROOT / ".env.example").read_text()
    for variable in ("MONGO_USER", "MONGO_PASSWORD", "POSTGRES_USER", "POSTGRES_PASSWORD"):
        assert f"{variable}=" in example
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    for service in spec["services"].values():
        assert service.get("env_file") == ".env"


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
