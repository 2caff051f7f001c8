"""The MoEngage API emulator: deterministic data, real HTTP on loopback, injectable faults."""

from moestats_dagster.sandbox.app import DEFAULT_WORKSPACES, Faults, SandboxApp, SandboxWorkspace
from moestats_dagster.sandbox.server import SandboxServer

__all__ = ["DEFAULT_WORKSPACES", "Faults", "SandboxApp", "SandboxServer", "SandboxWorkspace"]
