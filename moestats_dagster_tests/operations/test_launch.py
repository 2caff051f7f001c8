"""Our own daemon: started beside a code server of its own, as `dagster dev` starts them."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import psutil
from dagster import DagsterInstance

from moestats_dagster.operations.demo import LOCATION
from moestats_dagster.operations.launch import daemon_is_running, start_services
from moestats_dagster_tests.conftest import PATIENCE

ROOT = Path(__file__).resolve().parents[2]


def _commands(proc: subprocess.Popen) -> list[str]:
    return [" ".join(p.cmdline()) for p in psutil.Process(proc.pid).children(recursive=True)]


@contextlib.contextmanager
def own_services(tmp_path, monkeypatch):
    """Our code server and daemon on a fresh DAGSTER_HOME, once the daemon beats: (services,
    instance); both stopped after."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    instance = DagsterInstance.from_config(str(home))
    with (tmp_path / "services.log").open("ab") as log:
        services = start_services("moestats_dagster.definitions", LOCATION, cwd=ROOT, env=env,
                                  log=log)  # fmt: skip
        try:
            deadline = time.monotonic() + PATIENCE
            while not daemon_is_running(instance):
                assert services.daemon.poll() is None, (tmp_path / "services.log").read_text()
                assert time.monotonic() < deadline, "the daemon never beat"
                time.sleep(0.5)
            yield services, instance
        finally:
            services.stop()


def test_the_daemon_loads_the_code_server_started_beside_it_and_stop_ends_both(
    tmp_path, monkeypatch
):
    """The daemon starts no code server of its own (one it starts, it replaces every 60 s); it
    beats with the code loaded from ours; stop() ends both and removes the socket's folder."""
    with own_services(tmp_path, monkeypatch) as (services, _):
        folder = Path(services.folder.name)
        assert (folder / "code.sock").exists()
        assert not [c for c in _commands(services.daemon) if "grpc" in c]
        assert any("api grpc" in c for c in _commands(services.code_server))
    assert services.daemon.poll() is not None and services.code_server.poll() is not None
    assert not folder.exists()


def test_a_killed_daemons_last_heartbeat_is_not_taken_for_a_daemon(tmp_path, monkeypatch):
    """A daemon SIGKILLed a moment ago left a fresh heartbeat; it never beats again, so the
    next `moestats backfill` starts a daemon of its own instead of waiting on a dead one."""
    import signal

    from moestats_dagster.operations.launch import daemon_beats_again

    with own_services(tmp_path, monkeypatch) as (services, instance):
        assert daemon_beats_again(instance)  # alive: it beats again
        services.daemon.send_signal(signal.SIGKILL)
        services.daemon.wait(timeout=PATIENCE)
        assert daemon_is_running(instance)  # its last beat is still fresh ...
        assert not daemon_beats_again(instance)  # ... but it is not taken for a daemon
