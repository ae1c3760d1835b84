"""`import spendpipe` stays light: the pipeline's processes import the package too, and
`spendpipe.install()` loads LiteLLM only when an application calls it."""

import subprocess
import sys


def test_importing_spendpipe_does_not_load_litellm() -> None:
    probe = "import sys, spendpipe; assert callable(spendpipe.install); print('litellm' in sys.modules)"

    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)

    assert run.stdout.strip() == "False"
