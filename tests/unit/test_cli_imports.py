"""What importing the CLI loads: every listing and `--help` pays for it before printing anything,
so the services and the heavy builders load only in the commands that use them."""

import subprocess
import sys

DEFERRED = (
    "spendpipe.runner",
    "spendpipe.aggregator.app",
    "spendpipe.enforcer.app",
    "spendpipe.notifier.app",
    "spendpipe.admin.preflight",
    "spendpipe.admin.asyncapi",
)


def test_importing_the_cli_loads_no_service() -> None:
    probe = f"import sys, spendpipe.admin.cli; print(*[m for m in {DEFERRED!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert loaded.stdout.split() == []
