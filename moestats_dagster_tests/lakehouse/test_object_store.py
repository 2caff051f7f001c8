"""The lake's files on a real S3-compatible server (moto's, on loopback, started by
scripts/with-s3): publish, read, replay, a run killed mid-publish, maintenance, the read-only way
in, `moestats doctor`, and errors that name the bucket and never a credential."""

from __future__ import annotations

import datetime as dt
import http.server
import os
import subprocess
import sys
import threading

import pytest

from moestats_dagster.lakehouse.lake import Lake, LakeDamaged
from moestats_dagster.lakehouse.maintenance import maintain
from moestats_dagster.lakehouse.object_store import ObjectStoreError
from moestats_dagster.lakehouse.query import QueryRefused
from moestats_dagster.lakehouse.query import connect as read_only
from moestats_dagster.lakehouse.warehouse import connection, read_slice, replace_slices
from moestats_dagster.model.schemas import FAILURE_BREAKDOWN
from moestats_dagster.orchestration.lib.doctor import lake_storage
from moestats_dagster.sandbox.generator import campaigns_on
from moestats_dagster_tests.conftest import ALPHA_KEY, MULTI_PAGE_DAY, S3_ENV
from moestats_dagster_tests.helpers import build, run_partition
from moestats_dagster_tests.racers import DAY, failures, without_inlining


@pytest.fixture
def s3_lake(bucket, tmp_path, monkeypatch) -> str:
    """A lake whose files are in a fresh bucket and whose catalog is a local SQLite file."""
    monkeypatch.setenv("MOESTATS_LAKE_CATALOG", str(tmp_path / "catalog.sqlite"))
    return bucket.url("team/lake")


def stored(lake: Lake) -> list[int]:
    with connection(lake) as conn:
        frame = read_slice(conn, FAILURE_BREAKDOWN, workspace_id="W", stat_date=DAY)
    return frame["count"].tolist()


def test_days_published_to_a_bucket_read_back_and_replay_exactly(
    sandbox, write_workspaces, s3_lake, bucket, tmp_path, limiter_dir
):
    path = write_workspaces(sandbox, {"id": "WS_ALPHA", "api_key": ALPHA_KEY,
                                      "metric_types": ["TOTAL"],
                                      "attribution_types": ["IN_SESSION"]})  # fmt: skip
    defs = build(path, s3_lake, limiter_dir)
    counts = []
    for _ in range(2):  # the second run replays the day: replaced, never appended
        assert run_partition(defs, MULTI_PAGE_DAY, "WS_ALPHA").success
        with read_only(s3_lake) as conn:
            counts.append(conn.execute(
                "SELECT (SELECT count(DISTINCT campaign_id) FROM moestats.performance_stats), "
                "(SELECT count(*) FROM moestats.performance_stats), "
                "(SELECT count(*) FROM moestats.campaign_stats_raw)"
            ).fetchall()[0])  # fmt: skip
    campaigns = len(campaigns_on("WS_ALPHA", MULTI_PAGE_DAY))
    assert counts[0] == counts[1] and counts[0][0] == campaigns and counts[0][2] == campaigns
    keys = bucket.keys("team/lake/files/moestats/")
    assert any(k.startswith("team/lake/files/moestats/performance_stats/") for k in keys)
    assert all(k.endswith(".parquet") for k in keys)
    assert not (tmp_path / "team").exists() and not list(tmp_path.rglob("*.parquet"))


KILLED_AFTER_WRITING = """
import os, signal, sys
from moestats_dagster.lakehouse.lake import Lake, connect
from moestats_dagster_tests.racers import failures
conn = connect(Lake.at(sys.argv[1]))
conn.register("incoming", failures(1, 2, 3))
conn.execute("BEGIN TRANSACTION")
conn.execute("DELETE FROM moestats.failure_breakdown WHERE workspace_id = 'W'")
conn.execute("INSERT INTO moestats.failure_breakdown SELECT * FROM incoming")
conn.execute("SELECT count(*) FROM moestats.failure_breakdown").fetchall()  # its file is written
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_run_killed_mid_publish_leaves_the_last_good_slice_and_maintenance_its_objects(
    s3_lake, bucket
):
    lake = without_inlining(Lake.from_env(s3_lake))
    with connection(lake) as conn:
        replace_slices(conn, {"failure_breakdown": failures(7)}, workspace_id="W", stat_date=DAY)
    before = set(bucket.keys())
    killed = subprocess.run([sys.executable, "-c", KILLED_AFTER_WRITING, s3_lake], check=False,
                            env=os.environ.copy(), capture_output=True, text=True)  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert stored(lake) == [7]
    orphans = set(bucket.keys()) - before
    assert orphans  # the killed transaction's file reached the bucket, no snapshot holds it
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)  # past the orphan grace period
    maintain(lake, now=later)
    assert not orphans & set(bucket.keys())
    assert stored(lake) == [7]


def test_the_read_only_way_in_reads_the_bucket_lake_and_nothing_else(s3_lake, bucket):
    with connection(Lake.from_env(s3_lake)) as conn:
        replace_slices(conn, {"failure_breakdown": failures(4)}, workspace_id="W", stat_date=DAY)
    bucket.client.put_object(Bucket=bucket.name, Key="elsewhere/secret.csv", Body=b"a\n1\n")
    with read_only(s3_lake) as conn:
        assert conn.execute("SELECT sum(count) FROM moestats.failure_breakdown").fetchall() == [
            (4,)
        ]
        for sql in (
            f"SELECT * FROM read_csv('s3://{bucket.name}/elsewhere/secret.csv')",
            f"SELECT * FROM glob('s3://{bucket.name}/**')",
        ):
            with pytest.raises(Exception, match="disabled by configuration"):
                conn.execute(sql).fetchall()
        with pytest.raises(QueryRefused, match="duckdb_secrets"):
            conn.execute("SELECT * FROM duckdb_secrets()")
        with pytest.raises(QueryRefused):
            conn.execute(f"COPY (SELECT 1) TO 's3://{bucket.name}/team/lake/files/x.parquet'")


def test_a_lost_catalog_beside_objects_in_the_bucket_is_not_replaced(s3_lake, bucket, tmp_path):
    lake = without_inlining(Lake.from_env(s3_lake))
    with connection(lake) as conn:
        replace_slices(conn, {"failure_breakdown": failures(4)}, workspace_id="W", stat_date=DAY)
    for file in tmp_path.glob("catalog.sqlite*"):
        file.unlink()
    with pytest.raises(LakeDamaged) as info, connection(lake):
        pass
    message = str(info.value)
    assert "catalog.sqlite is missing" in message and lake.data_path in message
    assert "from your backup" in message
    assert not (tmp_path / "catalog.sqlite").exists()


def test_an_object_missing_from_the_bucket_is_named_with_its_table(s3_lake, bucket):
    lake = without_inlining(Lake.from_env(s3_lake))
    with connection(lake) as conn:
        replace_slices(conn, {"failure_breakdown": failures(4)}, workspace_id="W", stat_date=DAY)
    [victim] = bucket.keys("team/lake/files/moestats/failure_breakdown/")
    bucket.client.delete_object(Bucket=bucket.name, Key=victim)
    with pytest.raises(LakeDamaged) as info, connection(lake) as conn:
        read_slice(conn, FAILURE_BREAKDOWN, workspace_id="W", stat_date=DAY)
    message = str(info.value)
    assert f"s3://{bucket.name}/{victim}" in message and "moestats.failure_breakdown" in message


def test_an_object_store_lake_needs_a_catalog_and_an_s3_url(monkeypatch):
    monkeypatch.delenv("MOESTATS_LAKE_CATALOG", raising=False)
    with pytest.raises(ObjectStoreError, match="MOESTATS_POSTGRES_URL .* MOESTATS_LAKE_CATALOG"):
        Lake.at("s3://team-bucket/lake")
    with pytest.raises(ObjectStoreError, match="AWS_ENDPOINT_URL_S3"):
        Lake.at("gs://team-bucket/lake")
    for bad in ("s3://AB/lake", "s3://key:secret@team-bucket/lake", "s3://team-bucket/a/../b"):
        with pytest.raises(ObjectStoreError) as info:
            Lake.at(bad, "postgresql://x")
        assert "secret@" not in str(info.value) or "never in the URL" in str(info.value)
    lake = Lake.at("s3://team-bucket/lake/", "postgresql://u@h/db")
    assert lake.data_path == "s3://team-bucket/lake/files/" and lake.remote


def test_doctor_checks_the_bucket_is_writable_and_names_a_missing_one(s3_lake, bucket):
    line, ok = lake_storage(Lake.from_env(s3_lake))
    assert ok and "✓ reachable and writable" in line and bucket.name in line
    assert bucket.keys("team/lake/doctor/") == ["team/lake/doctor/write-probe.parquet"]
    # Before: a name holding the digits 403 (the fixture's random names do, now and then) was
    # told as "refused access" to a bucket that does not exist.
    for gone in (f"{bucket.name}-gone", f"{bucket.name}-x403-gone"):
        line, ok = lake_storage(Lake.from_env(f"s3://{gone}/lake"))
        assert not ok and f"{gone} does not exist" in line
        assert S3_ENV["AWS_SECRET_ACCESS_KEY"] not in line


class _Forbidding(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint that refuses every request, as S3 does a key without the permissions."""

    def _refuse(self) -> None:
        body = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
        self.send_response(403)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_POST = _refuse

    def log_message(self, *args) -> None:
        pass


def test_doctor_names_refused_access_with_the_permissions_to_ask_for(s3_lake, monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Forbidding)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{server.server_port}")
        line, ok = lake_storage(Lake.from_env(s3_lake))
    finally:
        server.shutdown()
        server.server_close()
    assert not ok and "refused access" in line and "s3:PutObject" in line
    assert S3_ENV["AWS_SECRET_ACCESS_KEY"] not in line


def test_an_object_store_out_of_reach_is_named_without_the_credentials(
    s3_lake, monkeypatch, tmp_path
):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MOESTATS_LAKE_CATALOG", str(tmp_path / "other.sqlite"))
    with pytest.raises(ObjectStoreError) as info, connection(Lake.from_env(s3_lake)):
        pass
    message = str(info.value)
    assert "did not answer" in message and f"127.0.0.1:{port}" in message
    assert S3_ENV["AWS_SECRET_ACCESS_KEY"] not in message


def _writes_hang(upstream: str, release: threading.Event, reset: bool = False):
    """An S3 endpoint in front of the real server: reads pass, every write is taken in and never
    answered (a store that accepts the PUT and then hangs) or, with `reset`, cut off with a TCP
    reset mid-transfer (a load balancer or a store restarting)."""
    import http.client
    from urllib.parse import urlsplit

    target = urlsplit(upstream)

    class Handler(http.server.BaseHTTPRequestHandler):
        def _forward(self) -> None:
            if self.command in ("PUT", "POST") and reset:
                import socket
                import struct

                self.rfile.read(min(16, int(self.headers.get("Content-Length") or 0)))
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))  # fmt: skip
                self.connection.close()  # RST, before the body is all in
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.command in ("PUT", "POST"):
                release.wait(120)  # hung: until the test ends
                return
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
            conn.request(self.command, self.path, body=body or None, headers=dict(self.headers))
            answer = conn.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize("reset", [False, True], ids=["hangs", "reset-mid-put"])
def test_a_write_that_hangs_or_is_cut_off_fails_within_its_bound_named_and_the_lake_stays_whole(
    s3_lake, bucket, monkeypatch, reset
):
    """Before: DuckDB's raw 'Failed to read connection error for HTTP PUT' after 242 s; a reset
    mid-PUT reached the user as DuckDB's raw 'Failure when receiving data from the peer'."""
    from moestats_dagster.lakehouse import object_store

    lake = without_inlining(Lake.from_env(s3_lake))
    with connection(lake) as conn:
        replace_slices(conn, {"failure_breakdown": failures(7)}, workspace_id="W", stat_date=DAY)
    monkeypatch.setattr(object_store, "HTTP_TIMEOUT_SECONDS", 1)
    monkeypatch.setattr(object_store, "HTTP_RETRIES", 1)
    release = threading.Event()
    proxy = _writes_hang(bucket.endpoint, release, reset)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{proxy.server_port}")
        with pytest.raises(ObjectStoreError) as info, connection(lake) as conn:
            replace_slices(conn, {"failure_breakdown": failures(1, 2)}, workspace_id="W",
                           stat_date=DAY)  # fmt: skip
    finally:
        release.set()
        proxy.shutdown()
        proxy.server_close()
    message = str(info.value)
    assert f"s3://{bucket.name}/" in message and f"127.0.0.1:{proxy.server_port}" in message
    assert "did not write within 1 s x 2 tries" in message and "nothing was written" in message
    assert "IOException" not in message and not message.startswith("IO Error")
    assert S3_ENV["AWS_SECRET_ACCESS_KEY"] not in message
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", bucket.endpoint)
    assert stored(lake) == [7]  # the last good slice
