"""The lake on object storage (an S3-compatible server on loopback) against a local folder.

1. Publish per partition: one day x workspace (all 10 combinations, the five stats tables in one
   transaction, a connection per publish as a run makes it), on a local folder and on a bucket in
   turn (A B A B ...), median seconds and the ratio pair by pair.
2. A year of daily publishes for 3 workspaces on the bucket, then maintenance: objects, MB and the
   dashboard queries before and after (as benchmarks/maintenance.py does on a folder).

The server: MOESTATS_TEST_S3_ENDPOINT (make bench starts one with scripts/with-s3), else a
moto_server from this environment started here. Loopback has no network latency: a real bucket
adds each request's round trip (tens of ms), so read the ratio as the floor.

python -m benchmarks.run --only object_store   (MOESTATS_BENCH_DAYS=30 for a quick look)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from benchmarks import tiny
from moestats_dagster.lakehouse.lake import Lake
from moestats_dagster.lakehouse.warehouse import connection, replace_slices

from .maintenance import year_then_maintenance
from .storage import partition


def _publishes() -> int:
    return int(os.environ.get("MOESTATS_BENCH_PUBLISHES", "2" if tiny() else "20"))


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    endpoint = os.environ.get("MOESTATS_TEST_S3_ENDPOINT", "")
    if endpoint:
        yield endpoint
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).parent / "moto_server"
    server = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        for _ in range(600):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
                break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def bucket_lake(endpoint: str, folder: Path) -> Lake:
    import boto3

    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret",
                      AWS_REGION="us-east-1", AWS_ENDPOINT_URL_S3=endpoint,
                      MOESTATS_LAKE_CATALOG=str(folder / f"{uuid.uuid4().hex}.sqlite"))  # fmt: skip
    name = f"bench-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return Lake.from_env(f"s3://{name}/lake")


def _publish(lake: Lake, frames, day: dt.date) -> float:
    started = time.perf_counter()
    with connection(lake) as conn:
        replace_slices(conn, frames, workspace_id="WS_ALPHA", stat_date=day)
    return time.perf_counter() - started


def run() -> dict:
    days = int(os.environ.get("MOESTATS_BENCH_DAYS", "3" if tiny() else "365"))
    first = dt.date(2024, 12, 1)
    samples = [partition("WS_ALPHA", first + dt.timedelta(days=n)) for n in range(_publishes())]
    with s3_server() as endpoint, tempfile.TemporaryDirectory() as tmp:
        local, remote = Lake.at(Path(tmp) / "lake"), bucket_lake(endpoint, Path(tmp))
        for lake in (local, remote):  # each lake's tables created before timing
            _publish(lake, samples[0], first)
        local_s, remote_s = [], []
        for n, frames in enumerate(samples):
            day = first + dt.timedelta(days=n)
            local_s.append(_publish(local, frames, day))
            remote_s.append(_publish(remote, frames, day))
        ratios = [r / loc for r, loc in zip(remote_s, local_s, strict=True)]
        publish = {
            "publishes_each": _publishes(),
            "rows_per_publish": sum(len(f) for f in samples[0].values()),
            "local_seconds_median": round(statistics.median(local_s), 3),
            "bucket_seconds_median": round(statistics.median(remote_s), 3),
            "ratio_median": round(statistics.median(ratios), 2),
        }
        print(f"  publish per partition: {publish}", flush=True)
        year = year_then_maintenance(bucket_lake(endpoint, Path(tmp)), days)
    return {"publish": publish, "year_on_bucket": year}
