"""Stopping a child process as an orchestrator stops a service."""

import signal
import subprocess
from typing import Any


def terminate(process: subprocess.Popen[Any] | None, grace_s: float = 60.0, kill_wait_s: float = 30.0) -> None:
    """SIGTERM; SIGKILL if it is not gone after `grace_s`, then wait up to `kill_wait_s` for it.
    Nothing to do for no process, or one that already ended."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=kill_wait_s)
