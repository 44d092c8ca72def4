"""Comparability buckets: stable fingerprints of the chosen provenance keys, the registry, late provenance."""

from __future__ import annotations

import hashlib
import json

import pytest

from jobprov.errors import ConfigError
from jobprov.schemas.models import (
    ConfigRef,
    Dataset,
    JobStarted,
    JobSubmitted,
    MetricMeasured,
    ProvenanceDeclared,
)
from jobprov.stream_processors.comparability import (
    ComparabilityRegistry,
    MetricPolicy,
    bucket_keys,
    bucket_of,
    load_registry,
)
from jobprov.stream_processors.fold import FoldContext, fold
from jobprov.stream_processors.records import BucketMove, MetricPoint, ProvenanceRecord, materialize

PROVENANCE = {"dataset": "dr1", "band": "r", "config.hash": "cfg-9a1b"}
# The documented algorithm, done once by hand for PROVENANCE: blake2b (8 bytes) over
# json.dumps(sorted(pairs), separators=(",", ":")) == '[["band","r"],["config.hash","cfg-9a1b"],["dataset","dr1"]]'.
BUCKET_DR1_R = "c3abbf6ea1a0a498"


def _digest(pairs: dict[str, str]) -> str:
    """The documented bucket algorithm, independent of the product's fingerprint()."""
    content = json.dumps(sorted(pairs.items()), separators=(",", ":"))
    return hashlib.blake2b(content.encode(), digest_size=8).hexdigest()


def _points(outputs):
    return [r for r in outputs if isinstance(r, MetricPoint)]


def test_bucket_is_stable():
    assert _digest(PROVENANCE) == BUCKET_DR1_R
    assert bucket_of("AM1", PROVENANCE) == BUCKET_DR1_R
    assert bucket_of("AM1", dict(reversed(PROVENANCE.items()))) == BUCKET_DR1_R


def test_missing_keys_have_the_empty_value():
    assert bucket_keys(["band", "dataset", "band"], {"dataset": "dr1"}) == {"band": "", "dataset": "dr1"}
    assert bucket_of("AM1", {"dataset": "dr1"}) == _digest({"band": "", "config.hash": "", "dataset": "dr1"})


def test_keys_outside_the_comparability_set_do_not_move_the_bucket():
    noisy = {**PROVENANCE, "software.numpy": "2.0.1", "host": "nid007", "git.commit": "abc", "env.HOME": "/h"}
    assert bucket_of("AM1", noisy) == BUCKET_DR1_R
    assert bucket_of("AM1", {**PROVENANCE, "band": "g"}) != BUCKET_DR1_R
    assert bucket_of("AM1", {**PROVENANCE, "config.hash": "cfg-0000"}) != BUCKET_DR1_R


def test_explicit_keys_override_the_registry():
    registry = ComparabilityRegistry(metrics={"AM1": ("dataset", "band", "config.hash")})
    assert bucket_of("AM1", PROVENANCE, keys=["dataset"], registry=registry) == _digest({"dataset": "dr1"})
    assert bucket_of("AM1", PROVENANCE, registry=ComparabilityRegistry(metrics={"AM1": ("band",)})) == _digest(
        {"band": "r"}
    )


def _job(history, job_id, *, band="r", host="nid001", numpy="1.26.4"):
    h = history(job_id)
    h.add(JobSubmitted("coadd", "hpc"))
    h.add(JobStarted(host, "Linux", "6.1.0", cwd="/"))
    h.add(
        ProvenanceDeclared(
            values={"dataset": "dr1", "band": band},
            config=ConfigRef("cfg-9a1b"),
            software={"numpy": numpy},
        )
    )
    return h


def test_same_provenance_same_bucket_across_jobs(history, fold_events):
    a = _job(history, "job-a", host="nid001", numpy="1.26.4")
    b = _job(history, "job-b", host="nid999", numpy="2.0.1")
    a.add(MetricMeasured("AM1", 0.5))
    b.add(MetricMeasured("AM1", 0.7))
    (pa,) = _points(fold_events(a.events)[1])
    (pb,) = _points(fold_events(b.events)[1])
    assert pa.bucket == pb.bucket == BUCKET_DR1_R
    assert pa.bucket_keys == pb.bucket_keys == PROVENANCE


def test_a_different_band_is_a_different_bucket(history, fold_events):
    a = _job(history, "job-a", band="r")
    b = _job(history, "job-b", band="i")
    a.add(MetricMeasured("AM1", 0.5))
    b.add(MetricMeasured("AM1", 0.5))
    (pa,) = _points(fold_events(a.events)[1])
    (pb,) = _points(fold_events(b.events)[1])
    assert pa.bucket != pb.bucket
    assert pb.bucket == _digest({**PROVENANCE, "band": "i"})


def test_metric_tags_override_the_job_provenance_for_that_point(history, fold_events):
    h = _job(history, "job-a", band="r")
    tagged = h.add(MetricMeasured("AM1", 0.5, tags={"band": "g", "epoch": "3"}))
    plain = h.add(MetricMeasured("AM1", 0.6))
    points = {p.event_id: p for p in _points(fold_events(h.events)[1])}
    assert points[tagged.event_id].bucket == _digest({**PROVENANCE, "band": "g"})
    assert points[tagged.event_id].bucket_keys == {**PROVENANCE, "band": "g"}
    assert points[tagged.event_id].tags == {"band": "g", "epoch": "3"}
    assert points[plain.event_id].bucket == BUCKET_DR1_R


def test_explicit_comparability_keys_override_the_registry_in_the_fold(history, fold_events):
    context = FoldContext(registry=ComparabilityRegistry(metrics={"AM1": ("dataset", "band", "config.hash")}))
    h = _job(history, "job-a")
    explicit = h.add(MetricMeasured("AM1", 0.5, comparability_keys=["dataset"]))
    empty = h.add(MetricMeasured("AM1", 0.5, comparability_keys=[]))
    points = {p.event_id: p for p in _points(fold_events(h.events, context)[1])}
    assert points[explicit.event_id].bucket_keys == {"dataset": "dr1"}
    assert points[explicit.event_id].bucket == _digest({"dataset": "dr1"})
    assert points[empty.event_id].bucket_keys == {}
    assert points[empty.event_id].bucket == _digest({})


def test_registry_keys_per_metric_and_default(history, fold_events):
    registry = ComparabilityRegistry(default_keys=("dataset",), metrics={"AM1": ("band", "host")})
    context = FoldContext(registry=registry)
    h = _job(history, "job-a", host="nid042")
    am1 = h.add(MetricMeasured("AM1", 0.5))
    other = h.add(MetricMeasured("PA1", 3.0))
    points = {p.event_id: p for p in _points(fold_events(h.events, context)[1])}
    assert points[am1.event_id].bucket_keys == {"band": "r", "host": "nid042"}
    assert points[other.event_id].bucket_keys == {"dataset": "dr1"}
    assert {p.registry_version for p in points.values()} == {registry.version}


# --- the registry file ----------------------------------------------------------------------------------------


def _write(tmp_path, text, name="registry.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_registry(tmp_path):
    path = _write(
        tmp_path,
        'label = "2026-11"\n'
        'default_keys = ["dataset", "band"]\n'
        "\n"
        "[metrics.AM1]\n"
        'keys = ["dataset", "band", "config.hash"]\n',
    )
    registry = load_registry(path)
    assert registry.label == "2026-11"
    assert registry.default_keys == ("dataset", "band")
    assert registry.keys_for("AM1") == ("dataset", "band", "config.hash")
    assert registry.keys_for("PA1") == ("dataset", "band")
    assert registry.version.startswith("2026-11:")
    assert bucket_of("PA1", PROVENANCE, registry=registry) == _digest({"dataset": "dr1", "band": "r"})
    assert bucket_of("AM1", PROVENANCE, registry=registry) == BUCKET_DR1_R


def test_load_registry_defaults(tmp_path):
    registry = load_registry(_write(tmp_path, ""))
    assert registry.default_keys == ("dataset", "band", "config.hash")
    assert registry.version == ComparabilityRegistry().version
    assert ":" not in registry.version


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('defaults = ["dataset"]\n', "defaults"),
        ('label = "x"\ncolour = "red"\n', "colour"),
        ('[metrics.AM1]\nkeys = ["band"]\nweight = 2\n', "metrics.AM1"),
        ('[metrics.AM1]\nkey = ["band"]\n', "metrics.AM1"),
        ('[metrics.AM1]\nkeys = "band"\n', "metrics.AM1"),
        ('[metrics.AM1]\nkeys = ["band", ""]\n', "metrics.AM1"),
        ("[metrics]\nAM1 = 3\n", "metrics.AM1"),
        ('default_keys = "dataset"\n', "default_keys"),
        ("default_keys = [1, 2]\n", "default_keys"),
    ],
)
def test_bad_registry_names_the_key(tmp_path, text, names):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_registry(path)
    assert names in caught.value.key
    assert names in str(caught.value)


@pytest.mark.parametrize("text", ["metrics = 5\n", 'metrics = ["AM1"]\n'])
def test_registry_with_a_malformed_metrics_table_is_a_config_error(tmp_path, text):
    with pytest.raises(ConfigError) as caught:
        load_registry(_write(tmp_path, text))
    assert "metrics" in str(caught.value)


def test_registry_that_is_not_toml(tmp_path):
    path = _write(tmp_path, "default_keys = [dataset\n")
    with pytest.raises(ConfigError) as caught:
        load_registry(path)
    assert caught.value.key == "comparability_registry"
    assert str(path) in caught.value.reason


def test_registry_file_that_does_not_exist(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_registry(tmp_path / "missing.toml")
    assert caught.value.key == "comparability_registry"


def test_registry_version_follows_its_content(tmp_path):
    base = 'default_keys = ["dataset", "band"]\n[metrics.AM1]\nkeys = ["dataset"]\n'
    versions = {
        load_registry(_write(tmp_path, base, "a.toml")).version,
        load_registry(_write(tmp_path, base.replace('["dataset"]\n', '["dataset", "band"]\n'), "b.toml")).version,
        load_registry(_write(tmp_path, base.replace('"dataset", "band"]', '"dataset"]'), "c.toml")).version,
        load_registry(_write(tmp_path, base + '[metrics.PA1]\nkeys = ["band"]\n', "d.toml")).version,
        load_registry(_write(tmp_path, 'label = "v2"\n' + base, "e.toml")).version,
    }
    assert len(versions) == 5
    # Same content, same version (whatever the file is called or the order of its tables).
    again = '[metrics.AM1]\nkeys = ["dataset"]\n'
    assert (
        load_registry(_write(tmp_path, 'default_keys = ["dataset", "band"]\n' + again, "f.toml")).version
        == load_registry(tmp_path / "a.toml").version
    )


def test_metric_points_carry_the_registry_version(history, fold_events):
    h = _job(history, "job-a")
    h.add(MetricMeasured("AM1", 0.5))
    one = ComparabilityRegistry()
    two = ComparabilityRegistry(metrics={"AM1": ("dataset",)}, label="next")
    assert one.version != two.version
    (p1,) = _points(fold_events(h.events, FoldContext(registry=one))[1])
    (p2,) = _points(fold_events(h.events, FoldContext(registry=two))[1])
    assert p1.registry_version == one.version
    assert p2.registry_version == two.version
    assert p2.bucket == _digest({"dataset": "dr1"})  # a replay with the new registry recomputes buckets


# --- late provenance ------------------------------------------------------------------------------------------


def test_late_provenance_rebuckets_earlier_metrics(history, fold_events, context):
    h = history("job-a")
    h.add(JobSubmitted("coadd", "hpc"))
    m1 = h.add(MetricMeasured("AM1", 0.5))
    m2 = h.add(MetricMeasured("AM1", 0.6, tags={"epoch": "1"}))
    pinned = h.add(MetricMeasured("PA1", 1.0, tags={"band": "g"}, comparability_keys=["band"]))
    state, before = fold_events(h.events)
    empty_bucket = _digest({"band": "", "config.hash": "", "dataset": ""})
    assert {p.event_id: p.bucket for p in _points(before)} == {
        m1.event_id: empty_bucket,
        m2.event_id: empty_bucket,
        pinned.event_id: _digest({"band": "g"}),
    }

    late = h.add(
        ProvenanceDeclared(
            values={"band": "r"},
            datasets=[Dataset("dr1", "v3")],
        )
    )
    _, out = fold(state, late, context)
    assert _points(out) == []  # the state keeps no metric values: the sink moves the stored points
    (move,) = [r for r in out if isinstance(r, BucketMove)]
    assert move.state_version == state.version
    moved = {p.event_id: move.apply(p) for p in _points(before)}
    new_bucket = _digest({"band": "r", "config.hash": "", "dataset": "dr1"})
    assert moved[pinned.event_id] is None  # the pinned metric's bucket did not move
    rebucketed = {k: p for k, p in moved.items() if p is not None}
    assert set(rebucketed) == {m1.event_id, m2.event_id}
    for point in rebucketed.values():
        assert point.bucket == new_bucket
        assert point.bucket_keys == {"band": "r", "config.hash": "", "dataset": "dr1"}
        assert point.state_version == state.version
    assert rebucketed[m2.event_id].tags == {"epoch": "1"}
    kept = materialize([*before, *out])
    assert {r.bucket for r in kept.values() if isinstance(r, MetricPoint) and r.metric == "AM1"} == {new_bucket}
    (record,) = [r for r in out if isinstance(r, ProvenanceRecord)]
    assert record.values["dataset"] == "dr1"
    assert record.default_bucket == new_bucket

    # Provenance that does not move any bucket re-emits the provenance record only.
    software = h.add(ProvenanceDeclared(software={"numpy": "2.0.1"}))
    _, out = fold(state, software, context)
    assert _points(out) == []
    assert [type(r) for r in out] == [ProvenanceRecord]
    assert out[0].values["software.numpy"] == "2.0.1"

    # Provenance that changes nothing at all emits nothing.
    _, out = fold(state, h.add(ProvenanceDeclared(values={"band": "r"})), context)
    assert out == []


def test_late_provenance_with_an_older_time_does_not_override(history, fold_events, context):
    h = history("job-a")
    h.add(ProvenanceDeclared(values={"band": "i"}), at_ms=5_000)
    h.add(MetricMeasured("AM1", 0.5), at_ms=6_000)
    stale = h.add(ProvenanceDeclared(values={"band": "g"}), at_ms=1_000)
    state, _ = fold_events(h.events[:2])
    _, out = fold(state, stale, context)
    assert out == []  # an older declaration of the same key loses: nothing changed
    assert state.provenance_values()["band"] == "i"
    assert state.metric_keys == {"band", "config.hash", "dataset"}


def test_registry_policy_per_metric_with_defaults(tmp_path):
    registry = load_registry(
        _write(
            tmp_path,
            '[metrics.AM1]\nkeys = ["dataset"]\ndirection = "lower_is_better"\nmin_relative_change = 0.05\n'
            '[metrics.TPUT]\ndirection = "higher_is_better"\nmethod = "rolling_median"\nsensitivity = 0.01\n',
        )
    )
    am1, tput, other = registry.policy_for("AM1"), registry.policy_for("TPUT"), registry.policy_for("PA1")
    assert (am1.direction, am1.min_relative_change, am1.method) == ("lower_is_better", 0.05, "changepoint")
    assert registry.keys_for("TPUT") == registry.default_keys  # a policy alone keeps the default keys
    assert (tput.method, tput.sensitivity) == ("rolling_median", 0.01)
    assert other == MetricPolicy() and other.direction == "either"
    assert am1.worse(+1.0) and not am1.worse(-1.0)
    assert tput.worse(-1.0) and not tput.worse(+1.0)
    assert other.worse(-1.0) and other.worse(+1.0)
    assert not am1.matters(100.0, 4.0) and am1.matters(100.0, -5.0)
    # The policy says how to judge a series, not what is comparable: the version (and so the buckets) stay.
    plain = load_registry(_write(tmp_path, '[metrics.AM1]\nkeys = ["dataset"]\n', "plain.toml"))
    assert registry.version == plain.version


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[metrics.AM1]\ndirection = "down"\n', "[metrics.AM1] direction"),
        ('[metrics.AM1]\nmethod = "magic"\n', "[metrics.AM1] method"),
        ("[metrics.AM1]\nmin_relative_change = -1\n", "[metrics.AM1] min_relative_change"),
        ('[metrics.AM1]\nmin_absolute_change = "1"\n', "[metrics.AM1] min_absolute_change"),
        ("[metrics.AM1]\nsensitivity = 1.5\n", "[metrics.AM1] sensitivity"),
        ("[metrics.AM1]\nsensitivity = true\n", "[metrics.AM1] sensitivity"),
        ("[metrics.AM1]\nthreshold = 3\n", "[metrics.AM1] threshold"),
    ],
)
def test_bad_policy_names_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as caught:
        load_registry(_write(tmp_path, text))
    assert caught.value.key.endswith(key)
