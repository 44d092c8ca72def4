"""The demo: a verification campaign through the real emitters into a local jobprov, read back and plotted.

Starts `jobprov up` (a Tansu broker, the stream processor, the embedded ClickHouse store, the query API and the
web page) under build/demo/home, then records four weeks of nightly jobs on datasets testdata_hsc and
testdata_cfht, bands r and all, with metrics AM1, PA1 and TE1:
- numpy 1.26.4 -> 2.0.1 on night 18 shifts AM1 on testdata_hsc (the regression to find);
- testdata_cfht is revised on night 10 (new version, same content: the series continues, and says so in an
  annotation);
- two jobs fail on their first attempt and succeed on the retry, one fails outright, one `jobprov run` job is
  killed with SIGTERM mid-run;
- one job runs while the broker is unreachable: its events wait in the spool until `jobprov spool drain`.
Then it asks the service, through the same CLI a user types: job statuses, AM1 per provenance bucket, the
regressions with what changed, and writes plots (PNG and HTML) to build/demo/.

PA1, TE1 and AM1 on testdata_cfht are pure noise. Regressions are change points of each bucket's series: on
3,000 simulated pure-noise series of 28 Gaussian points, 2 showed one (the earlier rolling-median rule flagged
337, about one in nine), so the noise's seed hardly matters; the demo still checks that every red ring it
shows is the numpy upgrade (it stops otherwise).

Run it with `make demo` (add `--keep` to leave the service running for the web page).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jobprov
from jobprov.embedded.service import DEFAULT_API_PORT, DEFAULT_KAFKA_PORT, ServiceInfo, launch, stop
from jobprov.embedded.tansu import free_port, port_free
from jobprov.emitters.emitter import create_emitter
from jobprov.errors import JobprovError
from jobprov.query.backend import HttpBackend
from jobprov.settings import load_emitter_settings

NIGHTS = 28
UPGRADE_NIGHT = 18  # numpy 1.26.4 -> 2.0.1; shifts AM1 on testdata_hsc only
REVISION_NIGHT = 10  # testdata_cfht w.2026.40 -> w.2026.44, same content
RETRIED = {(5, "testdata_cfht", "all"), (21, "testdata_hsc", "r")}
# The four weeks up to last night: the jobs that run live at the end (wrapped, failed, during the outage) come
# the next day, so every plot is one continuous timeline.
START = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0) - timedelta(days=NIGHTS)
SEED = 7  # the noise's seed (any would do, nearly always: check_rings stops the demo on a false alarm)
JOBPROV = [sys.executable, "-m", "jobprov.cli.main"]
BIN = Path(sys.executable).parent  # where this Python's `jobprov` command is (.venv/bin under make)
OUT = Path("build/demo").resolve()


def jobprov_command() -> str:
    """How to type `jobprov` in a shell: the command itself if it is on PATH, else its path."""
    found = shutil.which("jobprov")
    return "jobprov" if found and Path(found).parent == BIN else str(BIN / "jobprov")


def cli(*args: str, env: dict[str, str]) -> str:
    """Run a jobprov command as a user would, show it, and return what it printed."""
    print(f"\n$ jobprov {' '.join(args)}")
    result = subprocess.run([*JOBPROV, *args], env=env, capture_output=True, text=True)
    print(result.stdout.rstrip() or result.stderr.rstrip())
    if result.returncode:
        raise SystemExit(f"jobprov {args[0]} failed: {result.stderr}")
    return result.stdout


def start_service(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], ServiceInfo]:
    # The defaults (what emitters reach with no configuration) unless another program holds them.
    ports = [p if port_free(p) else free_port() for p in (DEFAULT_KAFKA_PORT, DEFAULT_API_PORT, 9464)]
    print("The `$ jobprov ...` lines below are what you would type in a shell prepared so:")
    print(f"  export JOBPROV_HOME={env['JOBPROV_HOME']}")
    if ports[0] != DEFAULT_KAFKA_PORT:
        print(f"  export JOBPROV_URL=kafka://127.0.0.1:{ports[0]}/jobprov.events")
    activate = BIN / "activate"
    print(f"  source {activate}" if activate.exists() else f"  export PATH={BIN}:$PATH")
    print(f"\n$ jobprov up --kafka-port {ports[0]} --api-port {ports[1]} --metrics-port {ports[2]}")
    args = ["--kafka-port", str(ports[0]), "--api-port", str(ports[1]), "--metrics-port", str(ports[2])]
    try:
        proc, info = launch(args, env=env, home=Path(env["JOBPROV_HOME"]), log_path=log)
    except JobprovError as exc:
        raise SystemExit(str(exc)) from exc
    print(log.read_text().strip())
    return proc, info


def nightly_jobs(url: str, spool: str) -> int:
    """Four weeks of nightly validation jobs through the Python API; returns how many jobs were recorded."""
    rng = random.Random(SEED)
    emitter = create_emitter(load_emitter_settings({"url": url, "spool_dir": spool, "capture_packages": False}))
    jobs = 0
    for night in range(NIGHTS):
        numpy = "2.0.1" if night >= UPGRADE_NIGHT else "1.26.4"
        for dataset in ("testdata_hsc", "testdata_cfht"):
            version = "w.2026.44" if dataset == "testdata_cfht" and night >= REVISION_NIGHT else "w.2026.40"
            for band in ("r", "all"):
                t0 = START + timedelta(days=night, minutes=rng.randint(0, 30))
                job_id = f"validate-{dataset}-{band}-{night:02d}"
                attempts = 2 if (night, dataset, band) in RETRIED else 1
                for attempt in range(1, attempts + 1):
                    job = jobprov.job(
                        name="validate_drp",
                        job_id=job_id,
                        attempt=attempt,
                        kind="ci",
                        provenance={"dataset": dataset, "band": band},
                        datasets=[{"name": dataset, "version": version}],
                        time=t0,
                        emitter=emitter,
                    )
                    with job:
                        job.declare(software={"numpy": numpy, "pipe_tasks": "26.0.0"}, time=t0)
                        if attempt < attempts:
                            job.finish(status="failed", time=t0 + timedelta(minutes=3))  # a node failure
                            t0 += timedelta(minutes=10)
                            continue
                        shift = 1.5 if (dataset == "testdata_hsc" and night >= UPGRADE_NIGHT) else 0.0
                        base = {"testdata_hsc": 10.0, "testdata_cfht": 14.0}[dataset]
                        at = t0 + timedelta(minutes=20)
                        job.metric("AM1", base + shift + rng.gauss(0, 0.2), unit="mas", time=at)
                        job.metric("PA1", 8.0 + rng.gauss(0, 0.1), unit="mmag", time=at)
                        job.metric("TE1", 0.9 + rng.gauss(0, 0.01), unit="arcsec", time=at)
                        if dataset == "testdata_cfht" and night == REVISION_NIGHT and band == "r":
                            job.annotate(
                                "dataset_revision",
                                "testdata_cfht w.2026.40 -> w.2026.44: same content, the series continues",
                                author="demo",
                            )
                        job.finish(time=t0 + timedelta(minutes=25))
                jobs += 1
    try:  # a job that fails outright, recorded as it happens
        with jobprov.job(name="validate_drp", kind="ci", provenance={"dataset": "testdata_cfht"}, emitter=emitter):
            raise RuntimeError("butler repository not found")
    except RuntimeError:
        jobs += 1
    emitter.close()
    return jobs


def wrapped_jobs(env: dict[str, str]) -> int:
    """Any program, wrapped: one that reports a metric from a shell script, one killed mid-run."""
    emit = " ".join([*JOBPROV, "emit", "metric", "TE1", "0.905", "--unit", "arcsec", "--tag", "band=r"])
    subprocess.run(
        [*JOBPROV, "run", "--name", "shell_metric", "-p", "dataset=testdata_hsc", "--", "sh", "-c", emit],
        env=env,
        check=True,
    )
    killed = subprocess.Popen([*JOBPROV, "run", "--name", "long_job", "--", "sleep", "30"], env=env)
    time.sleep(1.5)
    killed.send_signal(signal.SIGTERM)
    killed.wait(timeout=30)
    return 2


def during_outage(env: dict[str, str]) -> int:
    """A job while the broker is unreachable: its events go to the spool; `jobprov spool drain` sends them."""
    dead = {**env, "JOBPROV_URL": f"kafka://127.0.0.1:{free_port()}/jobprov.events", "JOBPROV_FLUSH_TIMEOUT_S": "2",
            "JOBPROV_DELIVERY_TIMEOUT_MS": "2000"}  # fmt: skip
    print("\nA job while the broker is unreachable (on purpose): the emitter says where its events wait.")
    sys.stdout.flush()
    subprocess.run([*JOBPROV, "run", "--name", "during_outage", "--", "true"], env=dead, check=True)
    cli("spool", "status", env=env)
    cli("spool", "drain", env=env)
    print("the spooled events are delivered: nothing was lost")
    return 1


def wait_until_folded(api: HttpBackend, jobs: int, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while sum(api.status().values()) < jobs:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {sum(api.status().values())} of {jobs} jobs arrived; see {log}")
        time.sleep(0.5)


def bucket_table(api: HttpBackend, metric: str) -> None:
    print(f"\n{metric} per provenance bucket (compare like with like):")
    print(f"  {'bucket':<38} {'points':>6} {'median':>8} {'first':>8} {'last':>8}")
    for line in api.series(metric):
        values = line["values"]
        label = ", ".join(f"{k}={v}" for k, v in line["label"].items() if v)
        print(f"  {label:<38} {len(values):>6} {statistics.median(values):>8.2f} {values[0]:>8.2f} {values[-1]:>8.2f}")


def check_rings(api: HttpBackend) -> None:
    """Every red ring the demo shows is the numpy upgrade on testdata_hsc: no ring on a pure-noise series."""
    for metric in ("AM1", "PA1", "TE1"):
        for r in api.regressions(metric, onset_only=False):
            if metric != "AM1" or r["label"].get("dataset") != "testdata_hsc":
                raise SystemExit(f"a false alarm: {metric} on {r['label']} at {r['point']['time']} (pure noise)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="leave the service running until Ctrl-C")
    parser.add_argument("--out", type=Path, default=OUT, help="where the plots and the state home go")
    args = parser.parse_args()
    run(args.out.resolve(), keep=args.keep)


def run(out: Path, *, keep: bool) -> None:

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = {**os.environ, "JOBPROV_HOME": str(out / "home"), "JOBPROV_CAPTURE_PACKAGES": "0"}
    env.pop("JOBPROV_PROCESSOR_SINK_URL", None)
    proc, info = start_service(env, out / "up.log")
    try:
        env["JOBPROV_URL"] = info.kafka_url  # the default already, unless port 9092 was taken
        api = HttpBackend(info.api_url)
        jobs = nightly_jobs(info.kafka_url, str(out / "home" / "spool"))
        jobs += wrapped_jobs(env)
        jobs += during_outage(env)
        print(f"\n{jobs} jobs recorded; waiting for the stream processor to fold them ...")
        wait_until_folded(api, jobs, out / "up.log")

        cli("query", "status", env=env)
        bucket_table(api, "AM1")
        cli("query", "regressions", "AM1", env=env)
        found = api.regressions("AM1")
        hsc = [r for r in found if r["label"].get("dataset") == "testdata_hsc"]
        if not hsc or not any("numpy" in c["key"] for c in hsc[0]["changes"]):
            raise SystemExit("the numpy upgrade was not found as the cause of the AM1 regression on testdata_hsc")
        check_rings(api)
        for metric in ("AM1", "PA1", "TE1"):
            cli("query", "plot", metric, "--png", str(out / f"{metric}.png"), "--html", str(out / f"{metric}.html"),
                env=env)  # fmt: skip
        if keep:
            print(f"\nweb page: {info.api_url}/?metric=AM1   (API docs: {info.api_url}/docs)")
            print("the service keeps running; Ctrl-C stops it")
            proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop(proc)
    print(f"\nthe service is stopped; plots are in {out}. To browse the web page, start it again:")
    print(f"  JOBPROV_HOME={out / 'home'} {jobprov_command()} up")
    print(f"and open http://127.0.0.1:{DEFAULT_API_PORT}/?metric=AM1")


if __name__ == "__main__":
    main()
