"""Launch work the way the Dagster UI does, and follow it from a terminal.

`moestats demo` uses these: a backfill record that the daemon turns into queued runs (the UI's
"Launch backfill"), a daemon of our own only when none is running for the instance, and a
progress bar fed by the instance's run records and event log — including the rate-window waits
the runs log.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from dagster import AssetKey, DagsterEventType, DagsterInstance, RunsFilter
from dagster._core.definitions.repository_definition import SINGLETON_REPOSITORY_NAME
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.remote_origin import (
    RegisteredCodeLocationOrigin,
    RemotePartitionSetOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.remote_representation.external_data import PARTITION_SET_SNAP_NAME_SUFFIX

from moestats_dagster.orchestration.lib.run_tags import where

HEARTBEAT_FRESH_SECONDS = 60  # a daemon that beat this recently may be running ...
BEAT_AGAIN_SECONDS = 45  # ... and is, if it beats again this soon (Dagster's beat: every 30 s)
DAEMON_START_SECONDS = 90  # bound on waiting for our own daemon's first heartbeat
WAIT_LINE = re.compile(r"waiting (\d+) s for (\S+?)'s (\d+) calls per (\d+) s")


class LaunchError(RuntimeError):
    """The daemon or a launch could not do its part; the message says what and where to look."""


def daemon_is_running(instance: DagsterInstance) -> bool:
    beats = instance.get_daemon_heartbeats()
    return any(time.time() - b.timestamp < HEARTBEAT_FRESH_SECONDS for b in beats.values())


def daemon_beats_again(instance: DagsterInstance, wait_seconds: float = BEAT_AGAIN_SECONDS) -> bool:
    """Is another daemon alive now? A recent heartbeat is not enough (a daemon killed a moment
    ago left one): it must beat again after the newest we see, within one heartbeat interval."""
    if not daemon_is_running(instance):
        return False
    newest = max(b.timestamp for b in instance.get_daemon_heartbeats().values())
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if any(b.timestamp > newest for b in instance.get_daemon_heartbeats().values()):
            return True
        time.sleep(1)
    return False


@dataclass
class Services:
    """A code server and a daemon of our own, started together (see `start_services`)."""

    code_server: subprocess.Popen
    daemon: subprocess.Popen
    folder: tempfile.TemporaryDirectory

    @property
    def processes(self) -> list[subprocess.Popen]:
        return [self.code_server, self.daemon]

    def stop(self) -> None:
        for proc in (self.daemon, self.code_server):  # the daemon first: it uses the other
            _stop(proc)
        self.folder.cleanup()


def _stop(proc: subprocess.Popen) -> None:
    """Terminate, and kill what has not exited 30 s later."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _dagster_exe(name: str) -> str:
    exe = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if exe is None:
        raise LaunchError(f"{name} is not installed in this environment (pip install dagster)")
    return exe


def start_services(module: str, location: str, *, cwd: Path, env: dict[str, str], log) -> Services:
    """Dagster's code server for `module`, then a `dagster-daemon` loading it through a socket:
    what `dagster dev` starts. A daemon given the module itself starts a code server of its own
    and replaces it every 60 s (Dagster reloads a daemon's own code servers each minute), most
    of an idle daemon's CPU (docs/benchmarks.md, "Measurements behind the code"). Waits (at most
    DAEMON_START_SECONDS) until the code server answers."""
    from dagster._grpc.client import DagsterGrpcClient

    folder = tempfile.TemporaryDirectory(prefix="moestats-")
    socket = Path(folder.name) / "code.sock"
    code_server = subprocess.Popen(
        [_dagster_exe("dagster"), "code-server", "start", "--socket", str(socket),
         "--module-name", module, "--working-directory", str(cwd),
         "--location-name", location],
        cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        client = DagsterGrpcClient(socket=str(socket))
        deadline = time.monotonic() + DAEMON_START_SECONDS
        while True:
            if code_server.poll() is not None or time.monotonic() > deadline:
                raise LaunchError(
                    f"the code server for {module} did not answer within {DAEMON_START_SECONDS} s "
                    f"(exit code {code_server.poll()}); its log: {getattr(log, 'name', 'none kept')}"
                )
            if socket.exists():
                try:
                    client.ping("")
                    break
                except Exception:  # noqa: BLE001 (still loading the code: asked again)
                    pass
            time.sleep(0.5)
        workspace = Path(folder.name) / "workspace.yaml"
        workspace.write_text(
            yaml.safe_dump(
                {"load_from": [{"grpc_server": {"socket": str(socket), "location_name": location}}]}
            )
        )
        daemon_proc = subprocess.Popen(
            [_dagster_exe("dagster-daemon"), "run", "-w", str(workspace)],
            cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    except BaseException:
        _stop(code_server)
        folder.cleanup()
        raise
    return Services(code_server, daemon_proc, folder)


@contextmanager
def daemon(instance: DagsterInstance, module: str, location: str, log_path: Path) -> Iterator[bool]:
    """A `dagster-daemon` for this instance while the block runs, unless one is already running
    (`dg dev` in another terminal): yields whether it started one. It and its code server write
    to `log_path`, not the terminal."""
    if daemon_is_running(instance):
        print(f"Dagster daemon: one beat recently; checking that it is alive (up to "
              f"{BEAT_AGAIN_SECONDS} s) …", flush=True)  # fmt: skip
        if daemon_beats_again(instance):
            yield False
            return
        print("Dagster daemon: it did not beat again (stopped or killed); starting our own",
              flush=True)  # fmt: skip
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        services = start_services(module, location, cwd=Path.cwd(), env=os.environ.copy(), log=log)
        try:
            deadline = time.monotonic() + DAEMON_START_SECONDS
            while not daemon_is_running(instance):
                if services.daemon.poll() is not None or time.monotonic() > deadline:
                    raise LaunchError(
                        f"the Dagster daemon did not start within {DAEMON_START_SECONDS} s "
                        f"(exit code {services.daemon.poll()}); its log: {log_path}"
                    )
                time.sleep(0.5)
            yield True
        finally:
            services.stop()


def submit_backfill(
    instance: DagsterInstance,
    defs,
    asset_keys: Sequence[AssetKey],
    partition_keys: Sequence[str],
    *,
    tags: dict[str, str] | None = None,
    title: str | None = None,
) -> str:
    """A backfill record, as the UI's "Launch backfill" writes it; the daemon makes the runs."""
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=uuid.uuid4().hex[:8],
        asset_graph=defs.resolve_asset_graph(),
        partition_names=list(partition_keys),
        asset_selection=list(asset_keys),
        backfill_timestamp=time.time(),
        tags=tags or {},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=title,
        description=None,
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id


def submit_job_backfill(
    instance: DagsterInstance,
    job_name: str,
    location_name: str,
    partition_keys: Sequence[str],
    *,
    tags: dict[str, str] | None = None,
    title: str | None = None,
) -> str:
    """A backfill of a partitioned job, as its page in the UI launches one: the runs are runs of
    `job_name` (listed under it), not of Dagster's hidden asset job. The daemon finds the job in
    the code location named `location_name` and splits the keys into runs by the job's backfill
    policy — hand it one workspace's keys, so that every run holds one workspace."""
    origin = RemotePartitionSetOrigin(
        repository_origin=RemoteRepositoryOrigin(
            code_location_origin=RegisteredCodeLocationOrigin(location_name),
            repository_name=SINGLETON_REPOSITORY_NAME,
        ),
        partition_set_name=f"{job_name}{PARTITION_SET_SNAP_NAME_SUFFIX}",
    )
    backfill = PartitionBackfill(
        backfill_id=uuid.uuid4().hex[:8],
        partition_set_origin=origin,
        status=BulkActionStatus.REQUESTED,
        partition_names=list(partition_keys),
        from_failure=False,
        reexecution_steps=None,
        tags=tags or {},
        backfill_timestamp=time.time(),
        title=title,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id


def cancel_backfill(instance: DagsterInstance, backfill_id: str) -> None:
    backfill = instance.get_backfill(backfill_id)
    if backfill is not None and backfill.status == BulkActionStatus.REQUESTED:  # else: over
        instance.update_backfill(backfill.with_status(BulkActionStatus.CANCELING))


@dataclass
class RunWatcher:
    """New log lines of the runs being watched, read incrementally (a cursor per run)."""

    instance: DagsterInstance
    cursors: dict[str, str | None] = field(default_factory=dict)
    last_wait: tuple[float, str] | None = None  # (when it ends, what it waits for)

    def poll(self, run_ids: Sequence[str]) -> None:
        for run_id in run_ids:
            conn = self.instance.get_records_for_run(run_id, cursor=self.cursors.get(run_id))
            self.cursors[run_id] = conn.cursor
            for record in conn.records:
                entry = record.event_log_entry
                match = WAIT_LINE.search(entry.user_message or "")
                if match:
                    seconds, workspace, limit, window = match.groups()
                    per = "min" if window == "60" else f"{window} s"
                    self.last_wait = (
                        entry.timestamp + int(seconds),
                        f"{workspace}'s {limit} calls/{per}",
                    )

    def waiting(self) -> str | None:
        """'waiting 38 s for WS_ALPHA's 100 calls/min' while a logged wait lasts."""
        if self.last_wait is None:
            return None
        ends, what = self.last_wait
        left = ends - time.time()
        return f"waiting {left:.0f} s for {what}" if left >= 1 else None


def backfill_runs(instance: DagsterInstance, backfill_ids: Sequence[str]):
    return [
        run
        for backfill_id in backfill_ids
        for run in instance.get_runs(RunsFilter(tags={"dagster/backfill": backfill_id}))
    ]


def failed_days(instance: DagsterInstance, run) -> str:
    """A failed run as the days that failed (a range run's published days are not among them),
    the run, and why."""
    days, cause = [where(run)], ""
    records = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_FAILURE)
    for record in records.records:
        data = record.event_log_entry.dagster_event.step_failure_data
        failure = data.user_failure_data if data else None
        if failure is None:
            cause = cause or (data.error.message if data and data.error else "")
            continue
        listed = failure.metadata.get("failed_partitions")
        days = list(listed.value) if listed is not None else days
        cause = failure.description or cause
    cause = " ".join(cause.split())
    return (f"{', '.join(days)} (run {run.run_id[:8]})"
            + (f": {cause[:300]}{'…' if len(cause) > 300 else ''}" if cause else ""))  # fmt: skip
