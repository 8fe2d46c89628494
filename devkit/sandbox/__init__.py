"""Sandbox servers that speak the real protocols of RT REST2, Bakalari API v3 and Portail DF.

They stand in for the real systems in tests, in the demo and in the benchmarks, over real HTTP on 127.0.0.1.
"""

from devkit.sandbox.server import Knobs, SandboxApp, SandboxHandle, SandboxProcess, ThreadedSandbox

__all__ = ["Knobs", "SandboxApp", "SandboxHandle", "SandboxProcess", "ThreadedSandbox"]
