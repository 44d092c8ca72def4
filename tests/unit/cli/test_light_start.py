"""`jobprov run` starts the job before it loads the event model, the broker client or the codecs."""

from __future__ import annotations

import subprocess
import sys

from jobprov.cli import run as run_command
from jobprov.schemas.models import JOB_KINDS

HEAVY = ("jobprov.schemas.models", "jobprov.emitters.emitter", "confluent_kafka", "fastavro", "psutil", "fastapi")


def test_run_command_and_wrapper_load_nothing_heavy() -> None:
    probe = (
        "import sys\n"
        "from jobprov.cli.main import cli\n"
        "cli.get_command(None, 'run')\n"
        "import jobprov.emitters.wrapper\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_run_command_offers_the_models_job_kinds() -> None:
    assert run_command.JOB_KINDS == JOB_KINDS
