"""Shared fixtures: a sandbox on a real loopback socket, a temp DuckDB file, a temp DAGSTER_HOME."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator

import pytest

from moestats_dagster.sandbox import DEFAULT_WORKSPACES, Faults, SandboxApp, SandboxServer
from moestats_dagster.sandbox.app import SandboxWorkspace

ALPHA_KEY = "sandbox-key-alpha"
# How long a test waits for something that happens at once on an idle machine (an answer on
# loopback, a process ending on SIGTERM): a bound against a hang, not a speed expectation; a
# loaded CI machine can take seconds.
PATIENCE = 120
# Days of WS_ALPHA's synthetic calendar with known shapes (asserted in test_sandbox).
MULTI_PAGE_DAY = dt.date(2024, 12, 3)  # 44 campaigns: 5 pages
EMPTY_DAY = dt.date(2024, 12, 7)  # no campaigns
SMALL_DAY = dt.date(2024, 12, 2)  # 10 campaigns: 1 page


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., SandboxServer]]:
    """Start sandboxes with given options; all are stopped after the test."""
    servers: list[SandboxServer] = []

    def start(
        *,
        workspaces: list[SandboxWorkspace] | None = None,
        window_seconds: float = 60.0,
        **faults,
    ) -> SandboxServer:
        app = SandboxApp(
            workspaces or list(DEFAULT_WORKSPACES),
            window_seconds=window_seconds,
            faults=Faults(**faults),
        )
        server = SandboxServer(app).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def sandbox(make_sandbox) -> SandboxServer:
    return make_sandbox()


@pytest.fixture
def write_workspaces(tmp_path, monkeypatch):
    """Write a workspaces file whose workspaces point at a test sandbox; returns its path.
    Flow-linked campaigns are off unless a workspace asks (`"flows": "auto"`): the bundled
    sandbox's WS_ALPHA and WS_BETA have flows, which a test about something else would count
    among the day's campaigns (the flows tests ask for them)."""

    def write(server: SandboxServer, *workspaces: dict, start_date: str = "2024-01-01", **top):
        lines = [f'start_date: "{start_date}"']
        lines += [f"{k}: {v!r}" for k, v in top.items()]
        lines.append("workspaces:")
        for ws in workspaces:
            ws = {"base_url": server.url, "flows": "off", **ws}
            ws.setdefault("api_key_env", f"TEST_KEY_{ws['id']}")
            key = ws.pop("api_key", None)
            if key is not None:
                monkeypatch.setenv(ws["api_key_env"], key)
            lines.append(f"  - id: {ws.pop('id')!r}")
            lines += [f"    {k}: {v!r}" if not isinstance(v, list) else f"    {k}: {v}"
                      for k, v in ws.items()]  # fmt: skip
        path = tmp_path / "workspaces.yaml"
        path.write_text("\n".join(lines) + "\n")
        return path

    return write


@pytest.fixture
def database(tmp_path) -> str:
    """A fresh warehouse (a DuckLake folder) per test."""
    return str(tmp_path / "lake")


@pytest.fixture
def limiter_dir(tmp_path) -> str:
    return str(tmp_path / "ratelimit")


@pytest.fixture(autouse=True)
def private_state_dir(tmp_path, monkeypatch):
    """Rate windows of code that uses the default location go to the test's own folder."""
    monkeypatch.setenv("MOESTATS_STATE_DIR", str(tmp_path / "state"))


def server_from(variable: str, what: str, script: str) -> str:
    """The address of a real server a script of ours started for the suite (make test and
    .ci/run run it under both). Without one: skipped locally, a failure on CI."""
    import os

    address = os.environ.get(variable, "")
    if not address:
        message = f"no {what}: run the tests with scripts/{script} (make test)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return address


@pytest.fixture
def postgres_server() -> str:
    """The real PostgreSQL server `scripts/with-postgres` starts."""
    return server_from("MOESTATS_TEST_POSTGRES_URL", "PostgreSQL server", "with-postgres")


@contextlib.contextmanager
def fresh_database(server: str) -> Iterator[str]:
    """A new, empty database on `server`, dropped afterwards (with whoever is still connected)."""
    import uuid

    import psycopg

    name = f"moestats_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_server) -> Iterator[str]:
    """A fresh database per test on the real PostgreSQL server."""
    with fresh_database(postgres_server) as url:
        yield url


@pytest.fixture
def s3_server() -> str:
    """The real S3-compatible server `scripts/with-s3` starts."""
    return server_from("MOESTATS_TEST_S3_ENDPOINT", "S3-compatible server", "with-s3")


@dataclasses.dataclass
class Bucket:
    name: str
    endpoint: str
    client: object  # a boto3 S3 client

    def url(self, prefix: str = "lake") -> str:
        return f"s3://{self.name}/{prefix}"

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=prefix
        )
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


S3_ENV = {"AWS_ACCESS_KEY_ID": "moestats-test", "AWS_SECRET_ACCESS_KEY": "moestats-test-secret",
          "AWS_REGION": "us-east-1"}  # fmt: skip


def s3_environment(endpoint: str) -> dict[str, str]:
    """The environment a process needs to reach the test server's buckets."""
    return {**S3_ENV, "AWS_ENDPOINT_URL_S3": endpoint}


@pytest.fixture
def bucket(s3_server, monkeypatch) -> Bucket:
    """A fresh bucket on the S3-compatible server, this process's environment pointed at it."""
    import uuid

    import boto3

    for name, value in s3_environment(s3_server).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1",
                          aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"])  # fmt: skip
    name = f"moestats-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return Bucket(name, s3_server, client)
