"""The Helm chart (helm/jobprov) and the image it runs (Dockerfile), checked with the real tools.

helm lints and renders the chart; kubernetes-validate checks every rendered object against the Kubernetes
schemas; the environment each pod gets is loaded by the code's own settings loader; the commands, options and
probe paths are the ones the code has; and the rendered workloads are started here, as the pods would run them
(only addresses, ports and the store moved to this machine), to see their probes answer.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import pytest
import yaml

from jobprov import __version__
from jobprov.cli.main import cli
from jobprov.emitters.kafka import parse_kafka_url
from jobprov.query.tokens import token_hash
from jobprov.settings import (
    ENV_PREFIX,
    RUNTIME_ENV,
    ApiSettings,
    KafkaSecuritySettings,
    ProcessorSettings,
    known_env,
    load_alert_settings,
    load_api_settings,
    load_emitter_settings,
    load_processor_settings,
)
from jobprov.sinks.clickhouse.ddl import Target
from jobprov.stream_processors.comparability import load_registry

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "jobprov"
PRODUCTION_VALUES = CHART / "values-production.yaml"
DOCKERFILE = REPO / "Dockerfile"
K8S_VERSION = "1.30.0"
CRD_API_GROUP = "monitoring.coreos.com/"
WORKLOAD_KINDS = ("Deployment", "Job", "CronJob")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}

# The ProcessorSettings variables, derived from the dataclass and the loader's prefix: `jobprov process`,
# `jobprov serve` and `jobprov db migrate` read nothing else.
PROCESSOR_ENV = {f"{ENV_PREFIX}PROCESSOR_{f.name.upper()}" for f in dataclasses.fields(ProcessorSettings)}

# The query API's own variables: only `jobprov serve` reads them.
API_ENV = {f"{ENV_PREFIX}API_{f.name.upper()}" for f in dataclasses.fields(ApiSettings)}

# Where recorded events go (an emitter's settings): the API (triage) and the alert scan read them.
EMITTER_ENV = {name for name, (section, _) in known_env().items() if section == "emitter"}
ALERTS_ENV = {name for name, (section, _) in known_env().items() if section == "alerts"}
# What each command reads beyond the processor's variables (the store).
COMMAND_ENV = {"serve": API_ENV | EMITTER_ENV, "alerts": EMITTER_ENV | ALERTS_ENV}

# What a user-managed Secret (clickhouse.existingSecret, kafka.existingSecret, kafka.security.sasl.existingSecret,
# kafka.security.tls.existingSecret) would hold.
EXTERNAL_SECRET_VALUES = {
    "JOBPROV_PROCESSOR_SINK_URL": "https://clickhouse.example.org:8443",
    "JOBPROV_PROCESSOR_CLICKHOUSE_USERNAME": "jobprov",
    "JOBPROV_PROCESSOR_CLICKHOUSE_PASSWORD": "kept-in-a-secret",
    "JOBPROV_PROCESSOR_SOURCE_URL": "kafka://kafka-0:9092,kafka-1:9092/jobprov.events",
    "JOBPROV_PROCESSOR_KAFKA_SASL_USERNAME": "jobprov-worker",
    "JOBPROV_PROCESSOR_KAFKA_SASL_PASSWORD": "kafka-password-in-a-secret",
    "JOBPROV_PROCESSOR_KAFKA_SSL_KEY_PASSWORD": "key-password-in-a-secret",
    "JOBPROV_URL": "kafka://kafka-0:9092,kafka-1:9092/jobprov.events",
    "JOBPROV_KAFKA_SASL_USERNAME": "jobprov-worker",
    "JOBPROV_KAFKA_SASL_PASSWORD": "kafka-password-in-a-secret",
    "JOBPROV_KAFKA_SSL_KEY_PASSWORD": "key-password-in-a-secret",
    "JOBPROV_ALERTS_WEBHOOKS": "slack=https://hooks.example.org/services/T0/B0/secret",
}

# The Kafka security settings; only the workers talk to Kafka, so only they get these.
KAFKA_SECURITY_ENV = {name for name in PROCESSOR_ENV if name.startswith(f"{ENV_PREFIX}PROCESSOR_KAFKA_")}
KAFKA_TLS_DIR = "/etc/jobprov/kafka-tls"

REGISTRY_TOML = 'label = "ops"\ndefault_keys = ["dataset", "band"]\n\n[metrics.AM1]\nkeys = ["dataset"]\n'

ALERTS_YAML = """\
groups:
  - name: jobprov
    rules:
      - alert: JobprovDeadLetters
        expr: increase(jobprov_dead_letters_total[10m]) > 0
        for: 5m
        labels:
          severity: warning
        annotations:
          summary: "{{ $labels.reason }}: messages went to dead letters"
"""

# Variants beyond the two values files: credentials created by the chart, or taken from Secrets the user
# manages, a comparability registry, a pre-existing ServiceAccount, the PodMonitor, Kafka over SASL with
# chart-created credentials and over mutual TLS.
SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "chart-secret": {
        "clickhouse": {"username": "jobprov", "password": "s3cret", "cluster": "staging"},
        "comparabilityRegistry": REGISTRY_TOML,
        "kafka": {
            "existingSecret": "kafka-source",
            "existingSecretKey": "url",
            "security": {
                "protocol": "SASL_PLAINTEXT",
                "sasl": {"mechanism": "SCRAM-SHA-256", "username": "worker", "password": "k4fka-s3cret"},
            },
        },
        "workers": {"batchSize": 2_000_000, "batchTimeoutS": 0.05},
        "api": {"ingress": {"enabled": True}},
        "alerts": {"webhooksSecret": "alert-hooks"},
    },
    "existing-secret": {
        "clickhouse": {
            "url": "",
            "existingSecret": "ch-credentials",
            "existingSecretKeys": {"url": "url", "username": "user", "password": "pass"},
        },
        "serviceAccount": {"create": False, "name": "jobprov-runner"},
        "metrics": {"podMonitor": {"enabled": True}},
        "api": {"enabled": False},
    },
    "kafka-mtls": {
        "kafka": {
            "replicationFactor": 2,
            "security": {
                "protocol": "SSL",
                "tls": {
                    "existingSecret": "kafka-client-tls",
                    "caKey": "ca.crt",
                    "certificateKey": "tls.crt",
                    "privateKeyKey": "tls.key",
                    "privateKeyPasswordKey": "key-password",
                },
            },
        },
    },
}


# ---- helpers -------------------------------------------------------------------------------------------


def helm_binary() -> str:
    local = REPO / ".tools" / "bin" / "helm"
    found = shutil.which("helm") or (str(local) if local.is_file() else None)
    if found is None:
        pytest.fail("helm is not installed: run `make tools` (it installs helm into .tools/bin)")
    return found


def jobprov_binary() -> str:
    local = Path(sys.executable).parent / "jobprov"
    found = str(local) if local.is_file() else shutil.which("jobprov")
    if found is None:
        pytest.fail("the jobprov command is not installed: run `make install`")
    return found


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=120, check=False)


@functools.cache
def _render(chart: str, args: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    result = helm("template", "rel", chart, "--namespace", "jobprov", *args)
    assert result.returncode == 0, f"helm template {' '.join(args)} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(*args: str, chart: Path = CHART) -> list[dict[str, Any]]:
    return copy.deepcopy(list(_render(str(chart), args)))


def render_error(*args: str) -> str:
    result = helm("template", "rel", str(CHART), *args)
    assert result.returncode != 0, f"helm template {' '.join(args)} should have failed:\n{result.stdout[:2000]}"
    return result.stderr


def chart_values(*files: Path) -> dict[str, Any]:
    """values.yaml merged with the given files (maps merge, everything else replaces), as helm does."""

    def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    merged: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    for path in files:
        merged = merge(merged, yaml.safe_load(path.read_text()) or {})
    return merged


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def settings_configmap(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-config")]
    return found


def workload(docs: list[dict[str, Any]], kind: str, component: str) -> dict[str, Any]:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["labels"]["app.kubernetes.io/component"] == component]
    assert len(found) == 1, f"expected one {kind} for {component}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    template = doc["spec"]["jobTemplate"]["spec"]["template"] if doc["kind"] == "CronJob" else doc["spec"]["template"]
    spec: dict[str, Any] = template["spec"]
    return spec


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(doc)
    return [*spec.get("initContainers", []), *spec["containers"]]


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in WORKLOAD_KINDS]


def secret_data(doc: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()}


def container_env(container: dict[str, Any], docs: list[dict[str, Any]], external: set[str]) -> dict[str, str]:
    """The environment the container gets: envFrom ConfigMaps and env entries, secretKeyRefs resolved against
    the rendered Secrets or, for Secrets the user manages (``external``), a value such a Secret would hold."""
    configmaps = {d["metadata"]["name"]: d.get("data") or {} for d in of_kind(docs, "ConfigMap")}
    secrets = {d["metadata"]["name"]: secret_data(d) for d in of_kind(docs, "Secret")}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, f"unexpected envFrom {source}"
        name = source["configMapRef"]["name"]
        assert name in configmaps, f"envFrom names ConfigMap {name}, which the chart does not render"
        env.update(configmaps[name])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        if ref["name"] in secrets:
            assert ref["key"] in secrets[ref["name"]], f"{item['name']}: Secret {ref['name']} has no key {ref['key']}"
            env[item["name"]] = secrets[ref["name"]][ref["key"]]
        else:
            assert ref["name"] in external, f"{item['name']} refers to Secret {ref['name']}, neither rendered nor given"
            env[item["name"]] = EXTERNAL_SECRET_VALUES[item["name"]]
    return env


def external_secrets(values: dict[str, Any]) -> set[str]:
    security = values["kafka"]["security"]
    names = (
        values["clickhouse"]["existingSecret"],
        values["kafka"]["existingSecret"],
        security["sasl"]["existingSecret"],
        security["tls"]["existingSecret"],
        values["alerts"]["webhooksSecret"],
    )
    return {n for n in names if n}


def named_port(container: dict[str, Any], name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    assert name in ports, f"container {container['name']} has no port named {name!r}: {ports}"
    return int(ports[name])


def probes(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: container[k]["httpGet"] for k in ("startupProbe", "livenessProbe", "readinessProbe") if k in container}


def subcommand(args: list[str]) -> tuple[list[str], click.Command, list[str]]:
    """The click command the container's args select (the image's ENTRYPOINT is `jobprov`), and the rest."""
    path: list[str] = []
    command: click.Command = cli
    rest = list(args)
    while isinstance(command, click.Group):
        assert rest, f"`jobprov {' '.join(path)}` needs a subcommand"
        name = rest.pop(0)
        found = command.get_command(click.Context(command), name)
        assert found is not None, f"`jobprov {' '.join(path)}` has no subcommand {name!r}"
        path.append(name)
        command = found
    return path, command, rest


def option_value(args: list[str], option: str) -> str:
    assert option in args, f"{option} not in {args}"
    return args[args.index(option) + 1]


def replace_option(args: list[str], option: str, value: str) -> list[str]:
    out = list(args)
    out[out.index(option) + 1] = value
    return out


def free_port() -> int:
    from jobprov.embedded.tansu import free_port as pick

    return pick()


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the process exited with {process.returncode} before {url} answered:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                return int(response.status), response.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout}s ({last}):\n{log.read_text()}")


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; stopped (SIGTERM, then SIGKILL) whatever happens."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def run_env(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    """The pod's environment on this machine: nothing of ours from the outer environment leaks in."""
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "LANG": "C.UTF-8", **env}


# ---- fixtures --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def scenario_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("values")
    files = {}
    for name, values in SCENARIOS.items():
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(values))
        files[name] = path
    files["production"] = PRODUCTION_VALUES
    return files


@pytest.fixture(scope="session")
def extras_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart with an alert-rule file and two dashboards, as the monitoring work will ship them."""
    chart = tmp_path_factory.mktemp("chart") / "jobprov"
    shutil.copytree(CHART, chart)
    (chart / "files" / "alerts.yaml").write_text(ALERTS_YAML)
    for name in ("ops-check-a.json", "ops-check-b.json"):
        (chart / "dashboards" / name).write_text(json.dumps({"title": name, "panels": [], "uid": name[:-5]}))
    return chart


def scenario_docs(scenario_files: dict[str, Path], name: str) -> list[dict[str, Any]]:
    if name == "default":
        return render()
    return render("-f", str(scenario_files[name]))


ALL_SCENARIOS = ["default", "production", *[n for n in SCENARIOS if n != "default"]]


# ---- helm lint and schema validation ------------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, "values-production.yaml"], ids=["default", "production"])
def test_helm_lint_strict_passes(values: str | None) -> None:
    args = ["lint", "--strict", str(CHART)] + (["-f", str(CHART / values)] if values else [])
    result = helm(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_helm_lint_strict_rejects_bad_values() -> None:
    result = helm("lint", "--strict", str(CHART), "--set-string", "workers.replicas=three")
    assert result.returncode != 0
    assert "at '/workers/replicas': got string, want integer" in result.stdout + result.stderr


@pytest.mark.parametrize("name", ALL_SCENARIOS)
def test_rendered_manifests_are_valid_kubernetes(scenario_files: dict[str, Path], name: str) -> None:
    docs = scenario_docs(scenario_files, name)
    assert of_kind(docs, "Deployment"), "nothing rendered"
    for doc in docs:
        if doc["apiVersion"].startswith(CRD_API_GROUP):
            continue  # not in kubernetes-validate's schemas: checked structurally below
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} ({name}): {exc.message} at {list(exc.path)}")


def test_rendered_production_validates_with_the_cli(tmp_path: Path) -> None:
    """The same check through kubernetes-validate's command line, as a deployment pipeline would run it."""
    docs = [d for d in render("-f", str(PRODUCTION_VALUES)) if not d["apiVersion"].startswith(CRD_API_GROUP)]
    manifest = tmp_path / "production.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    tool = Path(sys.executable).parent / "kubernetes-validate"
    result = subprocess.run(
        [str(tool), "--strict", "-k", K8S_VERSION, str(manifest)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(docs)


def sets(*assignments: str) -> list[str]:
    return [arg for assignment in assignments for arg in ("--set", assignment)]


TLS_SECRET = ("kafka.security.protocol=SSL", "kafka.security.tls.existingSecret=tls")

BAD_VALUES = [
    pytest.param(
        sets("api.auth.tokensSecret="),
        "api.auth.tokensSecret is required: the API listens on 0.0.0.0",
        id="api-beyond-loopback-without-tokens",
    ),
    pytest.param(sets("api.corsOrigins={*}"), "at '/api/corsOrigins/0'", id="cors-wildcard"),
    pytest.param(
        ["--set-string", "workers.replicas=three"],
        "at '/workers/replicas': got string, want integer",
        id="replicas-text",
    ),
    pytest.param(["--set", "workers.replicas=0"], "at '/workers/replicas': minimum: got 0, want 1", id="replicas-zero"),
    pytest.param(
        ["--set", "workers.replicas=5"],
        "workers.replicas (5) must not exceed kafka.partitions (4)",
        id="replicas-over-partitions",
    ),
    pytest.param(
        ["--set", "workers.autoscaling.enabled=true", "--set", "workers.autoscaling.maxReplicas=8"],
        "workers.autoscaling.maxReplicas (8) must not exceed kafka.partitions (4)",
        id="hpa-over-partitions",
    ),
    pytest.param(
        [
            "--set",
            "workers.autoscaling.enabled=true",
            "--set",
            "workers.autoscaling.minReplicas=4",
            "--set",
            "workers.autoscaling.maxReplicas=2",
        ],
        "workers.autoscaling.minReplicas (4) must not exceed workers.autoscaling.maxReplicas (2)",
        id="hpa-min-over-max",
    ),
    pytest.param(
        ["--set", "workers.logLevel=loud"], "at '/workers/logLevel': value must be one of", id="log-level-enum"
    ),
    pytest.param(
        ["--set", "api.service.type=Internal"], "at '/api/service/type': value must be one of", id="service-type-enum"
    ),
    pytest.param(
        ["--set", "image.pullPolicy=Sometimes"], "at '/image/pullPolicy': value must be one of", id="pull-policy-enum"
    ),
    pytest.param(["--set", "image.repository=null"], "at '/image': missing property 'repository'", id="no-repository"),
    pytest.param(["--set", "image.repository="], "at '/image/repository': minLength", id="empty-repository"),
    pytest.param(["--set", "workers.replica=2"], "additional properties 'replica' not allowed", id="unknown-key"),
    pytest.param(["--set", "kafka.partitions=0"], "at '/kafka/partitions': minimum: got 0, want 1", id="no-partitions"),
    pytest.param(["--set", "clickhouse.cluster=prod-1"], "at '/clickhouse/cluster'", id="cluster-not-identifier"),
    pytest.param(["--set", "clickhouse.url=chdb:///var/lib/store"], "at '/clickhouse/url'", id="embedded-store"),
    pytest.param(["--set", "clickhouse.url="], "clickhouse.url is required", id="no-store"),
    pytest.param(["--set", "workers.metricsPort=0"], "at '/workers/metricsPort': minimum", id="metrics-off"),
    pytest.param(["--set", "securityContext.runAsUser=0"], "at '/securityContext/runAsUser': minimum", id="root"),
    pytest.param(
        sets("kafka.replicationFactor=0"), "at '/kafka/replicationFactor': minimum: got 0, want 1", id="rf-zero"
    ),
    pytest.param(sets("kafka.security.protocol=TLS"), "at '/kafka/security/protocol': value must be one of", id="tls"),
    pytest.param(
        sets("kafka.security.protocol=SASL_SSL", "kafka.security.sasl.mechanism=GSSAPI"),
        "at '/kafka/security/sasl/mechanism': value must be one of",
        id="mechanism",
    ),
    pytest.param(
        sets("kafka.security.protocol=SASL_SSL"),
        "kafka.security.sasl.mechanism is required when kafka.security.protocol is SASL_SSL",
        id="sasl-without-mechanism",
    ),
    pytest.param(
        sets(
            "kafka.security.protocol=SASL_PLAINTEXT",
            "kafka.security.sasl.mechanism=PLAIN",
            "kafka.security.sasl.username=worker",
        ),
        "kafka.security.sasl.username and kafka.security.sasl.password (or kafka.security.sasl.existingSecret) are "
        "required when kafka.security.protocol is SASL_PLAINTEXT",
        id="sasl-without-password",
    ),
    pytest.param(
        sets(
            "kafka.security.protocol=SASL_SSL",
            "kafka.security.sasl.mechanism=PLAIN",
            "kafka.security.sasl.existingSecret=creds",
            "kafka.security.sasl.existingSecretKeys.password=",
        ),
        "kafka.security.sasl.existingSecretKeys.username and .password are required",
        id="sasl-secret-without-key",
    ),
    pytest.param(
        sets("kafka.security.sasl.username=worker"),
        "kafka.security.sasl is set but kafka.security.protocol is PLAINTEXT",
        id="sasl-without-sasl-protocol",
    ),
    pytest.param(
        sets(
            "kafka.security.protocol=SASL_PLAINTEXT",
            "kafka.security.sasl.mechanism=PLAIN",
            "kafka.security.sasl.existingSecret=creds",
            "kafka.security.tls.existingSecret=tls",
        ),
        "kafka.security.tls.existingSecret is set but kafka.security.protocol is SASL_PLAINTEXT",
        id="tls-without-tls-protocol",
    ),
    pytest.param(
        sets(*TLS_SECRET, "kafka.security.tls.certificateKey=tls.crt"),
        "kafka.security.tls.certificateKey and kafka.security.tls.privateKeyKey go together",
        id="certificate-without-key",
    ),
    pytest.param(
        sets(*TLS_SECRET, "kafka.security.tls.privateKeyPasswordKey=pw"),
        "kafka.security.tls.privateKeyPasswordKey needs kafka.security.tls.privateKeyKey",
        id="key-password-without-key",
    ),
    pytest.param(
        sets(*TLS_SECRET, "kafka.security.tls.caKey="),
        "kafka.security.tls.existingSecret needs kafka.security.tls.caKey",
        id="tls-secret-without-files",
    ),
    pytest.param(sets("kafka.security.sasl.pasword=x"), "additional properties 'pasword' not allowed", id="sasl-typo"),
]


@pytest.mark.parametrize(("args", "message"), BAD_VALUES)
def test_bad_values_fail_with_a_message(args: list[str], message: str) -> None:
    assert message in render_error(*args)


def test_production_is_within_the_partition_limits() -> None:
    values = chart_values(PRODUCTION_VALUES)
    docs = render("-f", str(PRODUCTION_VALUES))
    partitions = values["kafka"]["partitions"]
    worker = workload(docs, "Deployment", "worker")
    (hpa,) = of_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": worker["metadata"]["name"],
    }
    assert values["workers"]["replicas"] <= hpa["spec"]["maxReplicas"] <= partitions
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "replicas" not in worker["spec"], "the HPA owns the replica count"
    # A rollout replaces workers one at a time: never more workers than partitions.
    assert worker["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    default_worker = workload(render(), "Deployment", "worker")
    assert default_worker["spec"]["replicas"] <= chart_values()["kafka"]["partitions"]


# ---- security -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_SCENARIOS)
def test_every_pod_and_container_is_locked_down(scenario_files: dict[str, Path], name: str) -> None:
    docs = scenario_docs(scenario_files, name)
    assert workloads(docs)
    for doc in workloads(docs):
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        spec = pod_spec(doc)
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, where
        assert pod["runAsUser"] > 0 and pod["runAsGroup"] > 0, where
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["automountServiceAccountToken"] is False, where
        assert "hostNetwork" not in spec and "hostPID" not in spec, where
        empty_dirs = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for container in containers(doc):
            sc = container["securityContext"]
            what = f"{where} container {container['name']}"
            assert sc["runAsNonRoot"] is True, what
            assert sc["allowPrivilegeEscalation"] is False, what
            assert sc["readOnlyRootFilesystem"] is True, what
            assert sc.get("privileged", False) is False, what
            assert sc["capabilities"] == {"drop": ["ALL"]}, what
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, what
            assert sc.get("runAsUser", pod["runAsUser"]) > 0, what
            # The root filesystem is read-only: every directory the code writes is an emptyDir.
            writable = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", []) if not m.get("readOnly")}
            assert writable.get("/tmp") in empty_dirs, f"{what}: /tmp is not an emptyDir"
            assert set(writable.values()) <= empty_dirs, f"{what}: a writable mount is not an emptyDir"
            assert container["resources"].get("requests"), f"{what}: no resource requests"


# ---- the environment is settings the code reads ------------------------------------------------------------


def test_processor_variables_are_known_to_the_loader() -> None:
    assert {name for name, (section, _) in known_env().items() if section == "processor"} == PROCESSOR_ENV
    assert {
        "JOBPROV_PROCESSOR_TOPIC_REPLICATION_FACTOR",
        "JOBPROV_PROCESSOR_KAFKA_SECURITY_PROTOCOL",
        "JOBPROV_PROCESSOR_KAFKA_SASL_MECHANISM",
        "JOBPROV_PROCESSOR_KAFKA_SASL_USERNAME",
        "JOBPROV_PROCESSOR_KAFKA_SASL_PASSWORD",
        "JOBPROV_PROCESSOR_KAFKA_SSL_CA_LOCATION",
        "JOBPROV_PROCESSOR_KAFKA_SSL_CERTIFICATE_LOCATION",
        "JOBPROV_PROCESSOR_KAFKA_SSL_KEY_LOCATION",
        "JOBPROV_PROCESSOR_KAFKA_SSL_KEY_PASSWORD",
    } <= PROCESSOR_ENV


@pytest.mark.parametrize("name", ALL_SCENARIOS)
def test_every_env_var_is_a_setting_the_code_reads(scenario_files: dict[str, Path], name: str) -> None:
    docs = scenario_docs(scenario_files, name)
    values = chart_values(scenario_files[name])
    external = external_secrets(values)
    for doc in workloads(docs):
        for container in containers(doc):
            what = f"{doc['kind']}/{doc['metadata']['name']} container {container['name']}"
            env = container_env(container, docs, external)
            command = container["args"][0]
            readable = PROCESSOR_ENV | COMMAND_ENV.get(command, set())
            unknown = sorted(n for n in env if n not in readable and n not in RUNTIME_ENV)
            assert not unknown, f"{what} sets variables the code does not read: {unknown}"
            # The code's own loader accepts them (it rejects unknown JOBPROV_* names and bad values).
            settings = load_processor_settings(env=env)
            assert settings.sink_url is not None and settings.sink_url.startswith(("http://", "https://")), what
            assert settings.clickhouse_database == values["clickhouse"]["database"], what
            assert settings.clickhouse_cluster == (values["clickhouse"]["cluster"] or None), what
            if values["clickhouse"]["password"] and not values["clickhouse"]["existingSecret"]:
                assert settings.clickhouse_password is not None, what
                assert settings.clickhouse_password.get() == values["clickhouse"]["password"], what
            if command == "process":
                check_worker_settings(settings, values, container, doc, docs)
            else:
                assert not KAFKA_SECURITY_ENV & set(env), f"{what} does not consume: no worker Kafka settings"
            if EMITTER_ENV & COMMAND_ENV.get(command, set()):
                # It records events (triage, alerts) where the workers read them, with the same Kafka security.
                events = load_emitter_settings(env=env)
                assert events.url == settings.source_url or external, what
                if not values["kafka"]["existingSecret"]:
                    assert events.url == f"kafka://{values['kafka']['bootstrapServers']}/{values['kafka']['topic']}"
                assert events.spool_dir.startswith("/tmp/"), f"{what}: the spool is in the writable /tmp"
                check_worker_kafka_security(events, values["kafka"]["security"], container, doc)
            if command == "alerts":
                hooks = load_alert_settings(env=env).webhooks
                assert bool(hooks) == bool(values["alerts"]["webhooksSecret"]), what


@pytest.mark.parametrize("name", ALL_SCENARIOS)
def test_the_api_gets_its_tokens_file_and_its_own_host_names(scenario_files: dict[str, Path], name: str) -> None:
    """`jobprov serve` listens beyond loopback, so it needs tokens: the tokens file is mounted from the Secret the
    values name; the Host names it answers are the Service's and the Ingress hosts."""
    docs = scenario_docs(scenario_files, name)
    values = chart_values(scenario_files[name])
    if not values["api"]["enabled"]:
        assert not [d for d in workloads(docs) if d["metadata"]["name"].endswith("-api")]
        return
    api = workload(docs, "Deployment", "api")
    (container,) = containers(api)
    settings = load_api_settings(env=container_env(container, docs, external_secrets(values)))
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in api["spec"]["template"]["spec"]["volumes"]}
    assert settings.tokens_file == f"{mounts['api-tokens']['mountPath']}/tokens"
    assert mounts["api-tokens"]["readOnly"] is True
    secret = volumes["api-tokens"]["secret"]
    assert secret["secretName"] == values["api"]["auth"]["tokensSecret"]
    assert secret["items"] == [{"key": values["api"]["auth"]["tokensKey"], "path": "tokens"}]
    assert secret["defaultMode"] == 0o440
    service = next(d["metadata"]["name"] for d in of_kind(docs, "Service") if d["metadata"]["name"].endswith("-api"))
    assert {service, f"{service}.jobprov.svc", f"{service}.jobprov.svc.cluster.local"} <= set(settings.allowed_hosts)
    if values["api"]["ingress"]["enabled"]:
        assert {h["host"] for h in values["api"]["ingress"]["hosts"]} <= set(settings.allowed_hosts)


def check_worker_settings(
    settings: ProcessorSettings,
    values: dict[str, Any],
    container: dict[str, Any],
    doc: dict[str, Any],
    docs: list[dict[str, Any]],
) -> None:
    assert settings.partitions == values["kafka"]["partitions"]
    bootstrap, topic = parse_kafka_url(settings.source_url)
    if not values["kafka"]["existingSecret"]:
        assert (bootstrap, topic) == (values["kafka"]["bootstrapServers"], values["kafka"]["topic"])
    assert settings.batch_size == values["workers"]["batchSize"]
    assert settings.batch_timeout_s == values["workers"]["batchTimeoutS"]
    assert settings.app_id == values["workers"]["appId"]
    assert settings.metrics_port == named_port(container, "metrics") == values["workers"]["metricsPort"]
    assert settings.metrics_bind not in LOOPBACK, "probes and Prometheus reach the pod IP, not its loopback"
    assert settings.topic_replication_factor == values["kafka"]["replicationFactor"]
    check_worker_kafka_security(settings, values["kafka"]["security"], container, doc)
    if values["comparabilityRegistry"]:
        assert settings.comparability_registry is not None
        path = Path(settings.comparability_registry)
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent))
        volume = next(v for v in pod_spec(doc)["volumes"] if v["name"] == mount["name"])
        configmap = next(d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"] == volume["configMap"]["name"])
        with tempfile.TemporaryDirectory() as folder:
            registry_file = Path(folder) / path.name
            registry_file.write_text(configmap["data"][path.name])
            registry = load_registry(registry_file)  # the worker's own loader
        assert registry.keys_for("AM1") == ("dataset",)
    else:
        assert settings.comparability_registry is None


def check_worker_kafka_security(
    settings: KafkaSecuritySettings, security: dict[str, Any], container: dict[str, Any], doc: dict[str, Any]
) -> None:
    """A Kafka client's security settings (a worker's, or the events' of the API and the alert scan) are the
    values'; TLS files are paths into the read-only mount of exactly the Secret keys the values name."""
    assert settings.kafka_security_protocol == (security["protocol"] or None)
    sasl, tls = security["sasl"], security["tls"]
    if security["protocol"].startswith("SASL_"):
        assert settings.kafka_sasl_mechanism == sasl["mechanism"]
        assert settings.kafka_sasl_username is not None and settings.kafka_sasl_password is not None
        if not sasl["existingSecret"]:
            assert settings.kafka_sasl_username == sasl["username"]
            assert settings.kafka_sasl_password.get() == sasl["password"]
    else:
        assert settings.kafka_sasl_mechanism is settings.kafka_sasl_username is settings.kafka_sasl_password is None
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(doc)["volumes"]}
    if not tls["existingSecret"]:
        assert KAFKA_TLS_DIR not in mounts
        assert settings.kafka_ssl_ca_location is settings.kafka_ssl_certificate_location is None
        assert settings.kafka_ssl_key_location is settings.kafka_ssl_key_password is None
        return
    mount = mounts[KAFKA_TLS_DIR]
    assert mount["readOnly"] is True
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == tls["existingSecret"]
    files = {item["key"]: f"{KAFKA_TLS_DIR}/{item['path']}" for item in secret["items"]}
    expected = {
        tls["caKey"]: settings.kafka_ssl_ca_location,
        tls["certificateKey"]: settings.kafka_ssl_certificate_location,
        tls["privateKeyKey"]: settings.kafka_ssl_key_location,
    }
    assert files == {key: path for key, path in expected.items() if key}
    if tls["privateKeyPasswordKey"]:
        assert settings.kafka_ssl_key_password is not None
        assert tls["privateKeyPasswordKey"] not in files, "the key's password is a variable, not a file"
    config = settings.kafka_config()  # what every confluent-kafka client of the worker gets
    assert config["security.protocol"] == security["protocol"]
    assert config.get("ssl.ca.location") == settings.kafka_ssl_ca_location


def test_production_workers_use_sasl_ssl_from_secrets() -> None:
    values = chart_values(PRODUCTION_VALUES)
    security = values["kafka"]["security"]
    assert security["protocol"] == "SASL_SSL"
    docs = render("-f", str(PRODUCTION_VALUES))
    worker = workload(docs, "Deployment", "worker")
    (container,) = containers(worker)
    env = {e["name"]: e for e in container["env"]}
    sasl = security["sasl"]
    assert sasl["existingSecret"], "production credentials come from a Secret managed outside the chart"
    for name, key in (("USERNAME", "username"), ("PASSWORD", "password")):
        item = env[f"JOBPROV_PROCESSOR_KAFKA_SASL_{name}"]
        assert "value" not in item
        assert item["valueFrom"]["secretKeyRef"] == {
            "name": sasl["existingSecret"],
            "key": sasl["existingSecretKeys"][key],
        }
    assert env["JOBPROV_PROCESSOR_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
    assert env["JOBPROV_PROCESSOR_KAFKA_SASL_MECHANISM"]["value"] == sasl["mechanism"]
    # The CA from the TLS Secret, mounted read-only.
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == KAFKA_TLS_DIR]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod_spec(worker)["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == security["tls"]["existingSecret"]
    assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    assert volume["secret"]["defaultMode"] == 0o440
    # The code's own loader takes the rendered environment as it is.
    settings = load_processor_settings(env=container_env(container, docs, external_secrets(values)))
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert settings.kafka_sasl_username == EXTERNAL_SECRET_VALUES["JOBPROV_PROCESSOR_KAFKA_SASL_USERNAME"]
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get() == EXTERNAL_SECRET_VALUES["JOBPROV_PROCESSOR_KAFKA_SASL_PASSWORD"]
    assert settings.kafka_ssl_ca_location == f"{KAFKA_TLS_DIR}/ca.crt"
    assert settings.topic_replication_factor == values["kafka"]["replicationFactor"] > 1
    assert "kafka-password-in-a-secret" not in repr(settings.describe())
    # Nothing of it in the ConfigMap every workload shares: the API would need credentials it never uses.
    assert not KAFKA_SECURITY_ENV & set(settings_configmap(docs)["data"])
    assert not [d for d in of_kind(docs, "Secret") if d["metadata"]["name"].endswith("-kafka")]


def test_chart_created_kafka_credentials(scenario_files: dict[str, Path]) -> None:
    docs = render("-f", str(scenario_files["chart-secret"]))
    (secret,) = [d for d in of_kind(docs, "Secret") if d["metadata"]["name"] == "rel-jobprov-kafka"]
    assert secret_data(secret) == {"username": "worker", "password": "k4fka-s3cret"}
    (container,) = containers(workload(docs, "Deployment", "worker"))
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert refs["JOBPROV_PROCESSOR_KAFKA_SASL_USERNAME"] == {"name": "rel-jobprov-kafka", "key": "username"}
    assert refs["JOBPROV_PROCESSOR_KAFKA_SASL_PASSWORD"] == {"name": "rel-jobprov-kafka", "key": "password"}
    annotations = workload(docs, "Deployment", "worker")["spec"]["template"]["metadata"]["annotations"]
    changed = render("-f", str(scenario_files["chart-secret"]), "--set", "kafka.security.sasl.password=other")
    changed_annotations = workload(changed, "Deployment", "worker")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["checksum/secret"] != changed_annotations["checksum/secret"], "a new password rolls the pods"


def test_user_managed_secrets_are_referenced_not_copied(scenario_files: dict[str, Path]) -> None:
    docs = render("-f", str(scenario_files["existing-secret"]))
    assert not of_kind(docs, "Secret"), "the chart must not create a Secret when existingSecret is set"
    configmap = settings_configmap(docs)
    assert "JOBPROV_PROCESSOR_SINK_URL" not in configmap["data"], "the URL comes from the Secret"
    for doc in workloads(docs):
        for container in containers(doc):
            refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container.get("env", []) if "valueFrom" in e}
            assert refs["JOBPROV_PROCESSOR_SINK_URL"] == {"name": "ch-credentials", "key": "url"}
            assert refs["JOBPROV_PROCESSOR_CLICKHOUSE_USERNAME"] == {"name": "ch-credentials", "key": "user"}
            assert refs["JOBPROV_PROCESSOR_CLICKHOUSE_PASSWORD"] == {"name": "ch-credentials", "key": "pass"}
    job = workload(docs, "Job", "migrations")
    assert pod_spec(job)["serviceAccountName"] == "jobprov-runner"


def test_chart_created_credentials_live_only_in_secrets(scenario_files: dict[str, Path]) -> None:
    docs = render("-f", str(scenario_files["chart-secret"]))
    text = yaml.safe_dump_all([d for d in docs if d["kind"] != "Secret"])
    assert "s3cret" not in text, "a password appears outside a Secret"
    secrets = {d["metadata"]["name"]: d for d in of_kind(docs, "Secret")}
    assert {secret_data(s)["password"] for s in secrets.values()} == {"s3cret", "k4fka-s3cret"}


# ---- commands, options and probes are the code's --------------------------------------------------------------


def test_jobprov_help_lists_the_chart_commands(scenario_files: dict[str, Path]) -> None:
    result = subprocess.run([jobprov_binary(), "--help"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    listed = set(re.findall(r"^  (\S+)\s", result.stdout.split("Commands:", 1)[1], flags=re.MULTILINE))
    used = {
        c["args"][0]
        for name in ALL_SCENARIOS
        for doc in workloads(scenario_docs(scenario_files, name))
        for c in containers(doc)
    }
    assert used == {"process", "serve", "db", "alerts"}
    assert used <= listed, f"the chart runs {sorted(used - listed)}, which `jobprov --help` does not list"


@pytest.mark.parametrize("name", ALL_SCENARIOS)
def test_container_args_parse_as_jobprov_commands(scenario_files: dict[str, Path], name: str) -> None:
    for doc in workloads(scenario_docs(scenario_files, name)):
        for container in containers(doc):
            # The image's ENTRYPOINT is `jobprov`: containers give only args.
            assert "command" not in container, f"{container['name']} overrides the image's entrypoint"
            path, command, rest = subcommand(container["args"])
            try:
                command.make_context(" ".join(["jobprov", *path]), list(rest))  # parses, does not run
            except click.ClickException as exc:
                pytest.fail(f"`jobprov {' '.join(container['args'])}`: {exc.format_message()}")


def test_api_probes_hit_routes_the_app_serves() -> None:
    from jobprov.query.api import create_app
    from jobprov.query.store import Store

    routes = {getattr(r, "path", None) for r in create_app(Store(client=None)).routes}  # routes only: no query runs
    docs = render()
    api = workload(docs, "Deployment", "api")
    (container,) = containers(api)
    found = probes(container)
    assert set(found) == {"startupProbe", "livenessProbe", "readinessProbe"}
    assert found["livenessProbe"]["path"] == "/healthz"
    assert found["readinessProbe"]["path"] == "/readyz", "readiness must check the store"
    port = named_port(container, "http")
    assert int(option_value(container["args"], "--port")) == port
    assert option_value(container["args"], "--host") not in LOOPBACK
    for probe in found.values():
        assert probe["path"] in routes, f"{probe['path']} is not a route of the API ({sorted(map(str, routes))})"
        assert probe["port"] == "http"
    (service,) = [s for s in of_kind(docs, "Service") if s["metadata"]["name"] == api["metadata"]["name"]]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()


def test_worker_probes_hit_its_metrics_endpoint() -> None:
    docs = render()
    worker = workload(docs, "Deployment", "worker")
    (container,) = containers(worker)
    settings = load_processor_settings(env=container_env(container, docs, set()))
    found = probes(container)
    assert set(found) == {"startupProbe", "livenessProbe", "readinessProbe"}
    # The worker's HTTP server (stream_processors.health, on metrics_bind:metrics_port) serves /metrics and
    # /healthz: up once the port is open, alive and ready while its event loop turns.
    assert found["startupProbe"] == {"path": "/metrics", "port": "metrics"}
    assert found["livenessProbe"] == found["readinessProbe"] == {"path": "/healthz", "port": "metrics"}
    assert named_port(container, "metrics") == settings.metrics_port > 0
    assert settings.metrics_bind == "0.0.0.0"


# ---- the migration hook ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_SCENARIOS)
def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook(scenario_files: dict[str, Path], name: str) -> None:
    docs = scenario_docs(scenario_files, name)
    job = workload(docs, "Job", "migrations")
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    (container,) = containers(job)
    assert container["args"] == ["db", "migrate"]
    assert pod_spec(job)["restartPolicy"] == "Never"
    # A pre-install hook runs before the release's ConfigMap, Secret and ServiceAccount exist.
    assert "envFrom" not in container
    release_secrets = {d["metadata"]["name"] for d in of_kind(docs, "Secret") if "annotations" not in d["metadata"]}
    hook_secrets = {
        d["metadata"]["name"]: d["metadata"]["annotations"]
        for d in of_kind(docs, "Secret")
        if "helm.sh/hook" in d["metadata"].get("annotations", {})
    }
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref is None:
            continue
        assert ref["name"] not in release_secrets, f"{item['name']}: the Job cannot use the release's Secret"
        if ref["name"] in hook_secrets:
            hook = hook_secrets[ref["name"]]
            assert hook["helm.sh/hook"] == annotations["helm.sh/hook"]
            assert int(hook["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"])
    values = chart_values(scenario_files[name])
    if values["serviceAccount"]["create"]:
        assert "serviceAccountName" not in pod_spec(job), "the release's ServiceAccount does not exist yet"
    else:
        assert pod_spec(job)["serviceAccountName"] == values["serviceAccount"]["name"]


def test_production_cluster_reaches_the_migration_job() -> None:
    values = chart_values(PRODUCTION_VALUES)
    cluster = values["clickhouse"]["cluster"]
    assert cluster, "values-production.yaml should name a ClickHouse cluster"
    docs = render("-f", str(PRODUCTION_VALUES))
    (container,) = containers(workload(docs, "Job", "migrations"))
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["JOBPROV_PROCESSOR_CLICKHOUSE_CLUSTER"] == cluster
    settings = load_processor_settings(env=container_env(container, docs, external_secrets(values)))
    target = Target(settings.clickhouse_database, settings.clickhouse_cluster)
    assert target.on_cluster == f" ON CLUSTER {cluster}"
    assert target.engine("state_version").startswith("ReplicatedReplacingMergeTree(")
    assert settings.migrate_on_start  # the Job migrates
    # The workers get the cluster too (their inserts name the same database), but leave the DDL to the Job.
    configmap = settings_configmap(docs)
    assert configmap["data"]["JOBPROV_PROCESSOR_CLICKHOUSE_CLUSTER"] == cluster
    (worker,) = containers(workload(docs, "Deployment", "worker"))
    worker_settings = load_processor_settings(env=container_env(worker, docs, external_secrets(values)))
    assert worker_settings.clickhouse_cluster == cluster and worker_settings.migrate_on_start is False


# ---- monitoring objects ---------------------------------------------------------------------------------------


def check_selector(selector: dict[str, Any], labels: dict[str, str]) -> None:
    assert selector["matchLabels"].items() <= labels.items(), f"{selector} does not select {labels}"


def test_service_monitor_scrapes_the_workers() -> None:
    docs = render("-f", str(PRODUCTION_VALUES))
    (monitor,) = of_kind(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    worker = workload(docs, "Deployment", "worker")
    (service,) = [s for s in of_kind(docs, "Service") if s["metadata"]["name"].endswith("-worker-metrics")]
    check_selector(monitor["spec"]["selector"], service["metadata"]["labels"])
    assert service["spec"]["selector"].items() <= worker["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["clusterIP"] == "None"
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    (container,) = containers(worker)
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["path"] == "/metrics"
        assert endpoint["port"] in service_ports
        named_port(container, service_ports[endpoint["port"]]["targetPort"])
        assert re.fullmatch(r"(\d+(ms|s|m|h))+", endpoint["interval"])
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["jobprov"]}


def test_pod_monitor_scrapes_the_workers(scenario_files: dict[str, Path]) -> None:
    docs = render("-f", str(scenario_files["existing-secret"]))
    (monitor,) = of_kind(docs, "PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    worker = workload(docs, "Deployment", "worker")
    check_selector(monitor["spec"]["selector"], worker["spec"]["template"]["metadata"]["labels"])
    (container,) = containers(worker)
    for endpoint in monitor["spec"]["podMetricsEndpoints"]:
        assert endpoint["path"] == "/metrics"
        named_port(container, endpoint["port"])


def test_monitoring_is_off_by_default() -> None:
    kinds = {d["kind"] for d in render()}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule", "HorizontalPodAutoscaler", "Ingress"}


def test_prometheus_rule_carries_the_alert_file(extras_chart: Path) -> None:
    args = ("-f", str(PRODUCTION_VALUES))
    docs = render(*args, chart=extras_chart)
    (rule,) = of_kind(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"] == {"groups": yaml.safe_load(ALERTS_YAML)["groups"]}  # templates inside rules untouched
    for group in rule["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for item in group["rules"]:
            assert item["expr"] and ("alert" in item or "record" in item)


def test_prometheus_rule_renders_nothing_without_rules(extras_chart: Path, tmp_path: Path) -> None:
    chart = tmp_path / "jobprov"
    shutil.copytree(extras_chart, chart)
    (chart / "files" / "alerts.yaml").write_text("\n")
    assert not of_kind(render("--set", "metrics.prometheusRule.enabled=true", chart=chart), "PrometheusRule")
    (chart / "files" / "alerts.yaml").unlink()
    assert not of_kind(render("--set", "metrics.prometheusRule.enabled=true", chart=chart), "PrometheusRule")


def test_the_shipped_alert_file_renders_if_present() -> None:
    alerts = CHART / "files" / "alerts.yaml"
    docs = render("--set", "metrics.prometheusRule.enabled=true")
    rules = of_kind(docs, "PrometheusRule")
    if alerts.is_file() and alerts.read_text().strip():
        (rule,) = rules
        assert rule["spec"]["groups"] == yaml.safe_load(alerts.read_text())["groups"]
    else:
        assert not rules


def test_grafana_dashboards_configmap(extras_chart: Path) -> None:
    docs = render(
        "--set", "grafana.dashboards.enabled=true", "--set", "grafana.dashboards.labels.team=ops", chart=extras_chart
    )
    (configmap,) = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboards")]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["labels"]["team"] == "ops"
    files = sorted(p.name for p in (extras_chart / "dashboards").glob("*.json"))
    assert sorted(configmap["data"]) == files
    for name, text in configmap["data"].items():
        assert json.loads(text) == json.loads((extras_chart / "dashboards" / name).read_text())
    off = render(chart=extras_chart)
    assert not [d for d in of_kind(off, "ConfigMap") if d["metadata"]["name"].endswith("-dashboards")]


def test_the_shipped_dashboards_render_if_present() -> None:
    docs = render("--set", "grafana.dashboards.enabled=true")
    found = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["labels"].get("grafana_dashboard") == "1"]
    files = sorted(p.name for p in (CHART / "dashboards").glob("*.json"))
    if files:
        (configmap,) = found
        assert sorted(configmap["data"]) == files
        assert len(json.dumps(configmap["data"])) < 1024 * 1024, "a ConfigMap holds at most 1 MiB"
    else:
        assert not found


# ---- chart and image agree -----------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}".strip()
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        keyword, _, rest = pending.partition(" ")
        out.append((keyword.upper(), rest.strip()))
        pending = ""
    return out


def dockerfile_stages() -> list[dict[str, Any]]:
    instructions = dockerfile_instructions()
    args = {}
    stages: list[dict[str, Any]] = []
    for keyword, rest in instructions:
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            image, _, alias = re.sub(r"--platform=\S+\s+", "", rest).partition(" AS ")
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], image.strip())
            stages.append({"image": image, "alias": alias.strip() or None, "steps": []})
        else:
            assert stages or keyword == "ARG", f"{keyword} before the first FROM"
            if stages:
                stages[-1]["steps"].append((keyword, rest))
    return stages


def pyproject() -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text())
    return data


def extra_requirements(extras: set[str]) -> set[str]:
    """Distribution names an install of `.[extras]` brings in from pyproject (self-references followed)."""
    project = pyproject()["project"]
    optional: dict[str, list[str]] = project["optional-dependencies"]
    names: set[str] = set()
    todo = list(extras)
    seen: set[str] = set()
    requirements = list(project["dependencies"])
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        assert extra in optional, f"the Dockerfile installs extra [{extra}], which pyproject.toml does not define"
        requirements += optional[extra]
    for requirement in requirements:
        name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()
        if name == project["name"]:
            todo_extras = re.search(r"\[([^\]]+)\]", requirement)
            assert todo_extras is not None
            names |= extra_requirements({e.strip() for e in todo_extras.group(1).split(",")} - seen)
        else:
            names.add(name)
    return names


# What each command of the chart imports beyond the base install.
COMMAND_DISTRIBUTIONS = {
    "process": {"prometheus-client", "clickhouse-connect"},
    "serve": {"fastapi", "uvicorn", "clickhouse-connect"},
    "db": {"clickhouse-connect"},
    "alerts": {"clickhouse-connect", "ruptures", "confluent-kafka"},
}


def test_dockerfile_is_multi_stage_with_a_numeric_non_root_user() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "builder and runtime stages"
    builder, final = stages[0], stages[-1]
    assert builder["alias"] == "builder"
    assert final["image"] == "python:3.11-slim"
    assert builder["image"] == final["image"], "the venv's interpreter must be the runtime's"
    copies = [rest for keyword, rest in final["steps"] if keyword == "COPY"]
    assert any(rest.startswith("--from=builder") for rest in copies), "the runtime copies the builder's venv"
    assert not [rest for keyword, rest in final["steps"] if keyword == "RUN" and "pip install" in rest]
    users = [rest for keyword, rest in final["steps"] if keyword == "USER"]
    assert users, "the runtime stage sets USER"
    match = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1])
    assert match, f"USER {users[-1]} is not numeric: Kubernetes cannot check runAsNonRoot on a name"
    uid = int(match.group(1))
    assert uid != 0
    values = chart_values()
    assert uid == values["securityContext"]["runAsUser"]
    if match.group(2):
        assert int(match.group(2)) == values["securityContext"]["runAsGroup"]
    entrypoints = [rest for keyword, rest in final["steps"] if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoints[-1]) == ["jobprov"]


def test_dockerfile_installs_what_the_chart_commands_need(scenario_files: dict[str, Path]) -> None:
    builder = dockerfile_stages()[0]
    installs = [rest for keyword, rest in builder["steps"] if keyword == "RUN" and "pip install" in rest]
    assert installs
    extras = {
        e.strip() for m in re.finditer(r"\.\[([a-z0-9_,\-]+)\]", " ".join(installs)) for e in m.group(1).split(",")
    }
    assert {"processors", "clickhouse", "api"} <= extras
    installed = extra_requirements(extras)
    commands = {
        c["args"][0]
        for name in ALL_SCENARIOS
        for doc in workloads(scenario_docs(scenario_files, name))
        for c in containers(doc)
    }
    for command in commands:
        missing = COMMAND_DISTRIBUTIONS[command] - installed
        assert not missing, f"`jobprov {command}` needs {sorted(missing)}, which the image does not install"
    # Every package folder of the distribution, and the readme pyproject names, reach the build.
    setuptools = pyproject()["tool"]["setuptools"]
    folders = {path.split("/")[0] for path in setuptools["package-dir"].values()}
    copy_sources = {
        src.rstrip("/")
        for keyword, rest in builder["steps"]
        if keyword == "COPY"
        for src in rest.split()[:-1]
        if not src.startswith("--")
    }
    assert folders <= copy_sources, f"not copied into the image: {sorted(folders - copy_sources)}"
    assert {"pyproject.toml", pyproject()["project"]["readme"]} <= copy_sources


def test_dockerfile_carries_no_secrets_and_exposes_the_chart_ports() -> None:
    instructions = dockerfile_instructions()
    for keyword, rest in instructions:
        if keyword in ("ENV", "ARG"):
            assert not re.search(r"(PASSWORD|SECRET|TOKEN|CREDENTIAL|_KEY)\b", rest, re.IGNORECASE), rest
        if keyword in ("COPY", "ADD"):
            assert not re.search(r"\.env\b|\.pem\b|\.key\b|id_rsa", rest), rest
    exposed = {int(p.split("/")[0]) for keyword, rest in instructions if keyword == "EXPOSE" for p in rest.split()}
    values = chart_values()
    assert {values["api"]["port"], values["workers"]["metricsPort"]} <= exposed
    ignored = {line.strip().rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", ".tools"} <= ignored


def test_chart_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__ == pyproject()["project"]["version"]
    assert chart["apiVersion"] == "v2"
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert "repository" in schema["properties"]["image"]["required"]


# ---- the rendered workloads, started here ----------------------------------------------------------------------


def test_rendered_api_answers_its_probes(tmp_path: Path, started: list[subprocess.Popen[bytes]]) -> None:
    """`jobprov serve` with the API pod's args and environment; only the store is embedded and the
    address is this machine's loopback."""
    docs = render()
    (container,) = containers(workload(docs, "Deployment", "api"))
    port = free_port()
    args = replace_option(replace_option(container["args"], "--host", "127.0.0.1"), "--port", str(port))
    tokens = tmp_path / "tokens"  # what the chart mounts from api.auth.tokensSecret
    tokens.write_text(f"{token_hash('probe-token')} read\n")
    env = container_env(container, docs, set()) | {
        "JOBPROV_PROCESSOR_SINK_URL": f"chdb://{tmp_path / 'store'}",
        "JOBPROV_API_TOKENS_FILE": str(tokens),
    }
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [jobprov_binary(), *args], env=run_env(tmp_path, env), stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path
        )
    started.append(process)
    for kind, probe in probes(container).items():
        status, body = wait_http(f"http://127.0.0.1:{port}{probe['path']}", process, log, timeout=120)
        assert status == 200, f"{kind} {probe['path']}: {status} {body}"
    # Beyond the probes: a token is required under the Service's name, any other Host is refused.
    for host, expected in (("rel-jobprov-api.jobprov.svc", 401), ("evil.example", 400)):
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/status", headers={"Host": host})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10).close()
        assert refused.value.code == expected, host


def run_here(tmp_path: Path, args: list[str], env: dict[str, str]) -> str:
    """`jobprov ARGS` as the pod would run it, on this machine; its standard output (it must succeed)."""
    result = subprocess.run(
        [jobprov_binary(), *args],
        env=run_env(tmp_path, env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_rendered_migration_job_migrates(tmp_path: Path) -> None:
    """`jobprov db migrate` with the hook Job's args and environment against an embedded store."""
    docs = render()
    (container,) = containers(workload(docs, "Job", "migrations"))
    env = container_env(container, docs, set()) | {"JOBPROV_PROCESSOR_SINK_URL": f"chdb://{tmp_path / 'store'}"}
    report = json.loads(run_here(tmp_path, container["args"], env).strip().splitlines()[-1])
    assert report["database"] == chart_values()["clickhouse"]["database"]
    assert report["applied"], "a fresh store gets every migration"


def test_rendered_alert_scan_runs(tmp_path: Path) -> None:
    """The alert-scan CronJob's command and environment against an embedded store (migrated, no points yet): it
    scans, raises nothing, says so as JSON; its events would go to the events topic the workers read."""
    docs = render()
    cron = workload(docs, "CronJob", "alerts-scan")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid", "two passes at once would notify twice"
    (container,) = containers(cron)
    store = {"JOBPROV_PROCESSOR_SINK_URL": f"chdb://{tmp_path / 'store'}"}
    env = container_env(container, docs, set()) | store
    assert env["JOBPROV_URL"] == "kafka://kafka:9092/jobprov.events"
    run_here(tmp_path, ["db", "migrate"], env)
    found = json.loads(run_here(tmp_path, container["args"], env))
    assert found == {"buckets": 0, "raised": [], "seconds": pytest.approx(0, abs=30)}


@pytest.mark.integration
def test_rendered_worker_answers_its_probes(tmp_path: Path, started: list[subprocess.Popen[bytes]]) -> None:
    """`jobprov process` with the worker pod's args and environment, on a real broker; moved to this machine:
    broker and store addresses, data dir, ports (loopback) and a short session timeout."""
    from jobprov.embedded.tansu import start_broker

    docs = render()
    (container,) = containers(workload(docs, "Deployment", "worker"))
    broker = start_broker(log_path=tmp_path / "tansu.log")
    try:
        metrics_port = free_port()
        env = container_env(container, docs, set()) | {
            "JOBPROV_PROCESSOR_SOURCE_URL": broker.url(f"events-{uuid.uuid4().hex[:8]}"),
            "JOBPROV_PROCESSOR_SINK_URL": f"chdb://{tmp_path / 'store'}",
            "JOBPROV_PROCESSOR_METRICS_BIND": "127.0.0.1",
            "JOBPROV_PROCESSOR_METRICS_PORT": str(metrics_port),
            "JOBPROV_PROCESSOR_SESSION_TIMEOUT_S": "6",
        }
        log = tmp_path / "worker.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [jobprov_binary(), *container["args"]],
                env=run_env(tmp_path, env),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
            )
        started.append(process)
        for kind, probe in probes(container).items():
            status, body = wait_http(f"http://127.0.0.1:{metrics_port}{probe['path']}", process, log, timeout=180)
            assert status == 200, f"{kind} {probe['path']}: {status}"
            if probe["path"] == "/healthz":
                assert body.startswith("ok: last beat"), body
            else:
                assert "jobprov_" in body, "the probe reached the worker's own exporter"
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        broker.stop()
