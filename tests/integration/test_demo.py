"""The demo, run as `make demo` runs it, read as a person reads it: what it prints is checked, and the commands
it shows work when typed in the shell it says to prepare."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "examples" / "campaign.py"


def test_the_demo_tells_the_truth_and_its_commands_work_as_printed(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPROV_")}
    result = subprocess.run(
        [sys.executable, str(DEMO), "--out", str(out)], env=env, capture_output=True, text=True, timeout=600
    )
    printed = result.stdout + result.stderr
    assert result.returncode == 0, printed  # it stops on a false alarm or a missed regression
    assert "Traceback" not in printed

    assert re.search(r"aborted\s+1\n", printed) and re.search(r"failed\s+1\n", printed), printed
    assert re.search(r"succeeded\s+114\n", printed), printed
    # The regressions table: the numpy upgrade on both hsc buckets, nothing else, labels without empty keys.
    table = printed.split("$ jobprov query regressions AM1\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(table) == 3, table
    for row in table[1:]:
        assert "dataset=testdata_hsc" in row and "software.numpy: 1.26.4 → 2.0.1" in row
        assert "config.hash=" not in row
    # The outage is announced as intended, before the emitter's line about the spool.
    assert printed.index("broker is unreachable (on purpose)") < printed.index("events could not be delivered")
    # The web page's address is given only while the service runs; after it stops, how to start it again.
    stopped = printed.index("the service is stopped")
    assert "?metric=AM1   (API docs" not in printed[stopped:]
    for metric in ("AM1", "PA1", "TE1"):
        assert (out / f"{metric}.png").read_bytes().startswith(b"\x89PNG")
    assert "AM1 by provenance bucket: 2 regressions, " in (out / "AM1.html").read_text()
    assert '"unit": "arcsec"' in (out / "TE1.html").read_text()  # the TE1 plot says its unit

    # The shell it says to prepare, then the commands it showed, typed as shown.
    prelude = printed.split("in a shell prepared so:\n", 1)[1].split("\n\n", 1)[0]
    prepare = "; ".join(line.strip() for line in prelude.splitlines())
    assert "JOBPROV_HOME=" in prepare
    shown = [line.removeprefix("$ ") for line in printed.splitlines() if line.startswith("$ jobprov query ")]
    assert shown
    for command in shown:
        if " plot " in command:
            continue  # it rewrote the files; nothing new to learn
        typed = subprocess.run(["bash", "-c", f"{prepare}; {command}"], env=env, capture_output=True, text=True,
                               timeout=120)  # fmt: skip
        assert typed.returncode == 0, (command, typed.stderr)
    again = printed[stopped:].splitlines()[1].strip()  # JOBPROV_HOME=... /path/to/jobprov up
    assert again.endswith(" up")
    status = subprocess.run(["bash", "-c", again.removesuffix(" up") + " query status"], env=env,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert status.returncode == 0 and "succeeded  114" in status.stdout, status.stderr
