"""The MoEngage API emulator: deterministic data, real HTTP on loopback, injectable faults."""

from .app import DEFAULT_WORKSPACES, Faults, SandboxApp, SandboxWorkspace
from .server import SandboxServer

__all__ = ["DEFAULT_WORKSPACES", "Faults", "SandboxApp", "SandboxServer", "SandboxWorkspace"]
