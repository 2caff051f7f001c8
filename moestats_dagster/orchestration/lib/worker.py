"""A run's worker says where it runs and keeps saying it is alive, in the run's own tags, so a
run whose process died (an OOM kill, `kill -9`, a host that went away) is told from one that is
still working: `moestats/worker` (host, pid and the process's start time) once, and
`moestats/heartbeat` (epoch seconds) every BEAT_SECONDS while the run is in progress. The health-
checked run launcher (instance/run_launcher.py) reads both.

Written by hand because Dagster's default run launcher records no worker health at all (its
`supports_check_run_worker_health` is false); the launchers that do (Docker, Kubernetes, ECS) ask
their own platform.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time

from dagster import DagsterInstance

WORKER_TAG = "moestats/worker"  # "<host> <pid> <process start>"
HEARTBEAT_TAG = "moestats/heartbeat"  # epoch seconds of the worker's latest beat
BEAT_SECONDS = 30.0
STALE_SECONDS = 240.0  # no beat for this long: the worker is gone (8 beats missed)

_lock = threading.Lock()
_runs: dict[str, DagsterInstance] = {}
_beating: threading.Thread | None = None
_log = logging.getLogger(__name__)


def process_start(pid: int) -> str:
    """The process's start time as the kernel counts it (clock ticks since boot), or '' where
    /proc is not there: with the pid, it tells a process from a later one given the same pid."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def claim(instance: DagsterInstance | None, run_id: str | None) -> None:
    """Tag the run with this worker (host, pid, start) and keep its heartbeat going while it
    is in progress. Once per run and process; an ephemeral instance (tests) is left alone."""
    if instance is None or not run_id or instance.is_ephemeral:
        return
    global _beating
    with _lock:
        if run_id in _runs:
            return
        _runs[run_id] = instance
        pid = os.getpid()
        with contextlib.suppress(Exception):  # the run goes on if the tags cannot be written
            instance.add_run_tags(run_id, {
                WORKER_TAG: f"{socket.gethostname()} {pid} {process_start(pid)}",
                HEARTBEAT_TAG: str(int(time.time())),
            })  # fmt: skip
        if _beating is None or not _beating.is_alive():
            _beating = threading.Thread(target=_beat, name="moestats-heartbeat", daemon=True)
            _beating.start()


def _beat() -> None:
    while True:
        time.sleep(BEAT_SECONDS)
        with _lock:
            runs = dict(_runs)
        for run_id, instance in runs.items():
            try:
                run = instance.get_run_by_id(run_id)
                if run is None or run.is_finished:
                    with _lock:
                        _runs.pop(run_id, None)
                    continue
                instance.add_run_tags(run_id, {HEARTBEAT_TAG: str(int(time.time()))})
            except Exception as exc:  # noqa: BLE001 (a beat missed is not a run failed)
                _log.warning("moestats: run %s: heartbeat not written (%s)", run_id, exc)
