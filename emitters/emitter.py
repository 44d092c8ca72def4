"""The emitter: turns calls into events and hands them to a transport without holding the job up.

``emit`` only stamps the event (time, sequence number) and queues it: well under ten microseconds. A sender
thread builds the envelopes, encodes them and hands them to the transport. Guarantees:

- ``emit`` never raises into the caller; an internal failure is counted and reported once on stderr.
- An event the pipeline could not take (``emitters/validate.py``: a time out of range, a NaN metric...) is
  rejected before it is sent, counted, and reported at close with the rule it breaks.
- Every string of every payload is redacted (``emitters/redact.py``) on the sender thread, just before the
  event is encoded: this is the one place all events pass, whoever built them.
- The queue is bounded: past ``max_queue`` events the caller sends the backlog itself (backpressure with no
  loss and no unbounded memory).
- ``close`` returns within ``timeout`` seconds (the flush timeout); whatever was not delivered by then is in
  the spool, and one line on stderr says how many events and where.
- ``close`` does not wait for the background drain of earlier jobs' spool: a drain still probing the broker
  is stopped at once, one already sending gets ``DRAIN_GRACE_S`` at most. What it did not send stays in the
  spool for the next job or ``jobprov spool drain``.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import itertools
import logging
import math
import os
import sys
import threading
import time
import uuid
from datetime import datetime
from typing import Any

from jobprov import __version__
from jobprov.emitters.base import DeliveryReport, Framed, Transport
from jobprov.emitters.redact import Redactor
from jobprov.emitters.validate import check_event
from jobprov.errors import InvalidEventError
from jobprov.schemas import registry
from jobprov.schemas.binary import EnvelopeEncoder, timestamp_millis
from jobprov.schemas.models import Producer
from jobprov.schemas.wire import Codec
from jobprov.settings import EmitterSettings

log = logging.getLogger("jobprov")
log.addHandler(logging.NullHandler())  # a library never prints through logging's last-resort handler

REJECTED = "rejected "  # the prefix of a rejection's message among the report's errors
_LINGER_S = 0.02
_BATCH = 2048
DRAIN_GRACE_S = 0.5


def event_time_ms(value: datetime | float | None, default_s: float) -> int:
    """An event time as epoch milliseconds (the wire's precision): aware datetime, epoch seconds, or now."""
    if value is None:
        return int(default_s * 1000)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidEventError("event time must be timezone-aware (naive datetimes are ambiguous)")
        return timestamp_millis(value)
    seconds = float(value)
    if not math.isfinite(seconds):
        raise InvalidEventError(f"event time must be a finite number of epoch seconds, got {value!r}")
    return int(seconds * 1000)


class EventIds:
    """Event ids for one emitter: RFC 9562 version-8 UUIDs, 74 random bits fixed per emitter + a 48-bit counter.

    Ids must be unique (consumers deduplicate by them); they need not be unpredictable. Drawing 122 random
    bits per event cost more than encoding the event; a random part per emitter instance keeps the chance
    that two emitters ever share it negligible (about 1 in 10^22 for a pair), and the counter cannot repeat
    within one (2^48 events). A forked child gets a new emitter, hence a new random part.
    """

    def __init__(self) -> None:
        raw = bytearray(os.urandom(16))
        raw[6] = (raw[6] & 0x0F) | 0x80  # version 8
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 9562 variant
        h = raw.hex()
        self._prefix = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-"
        self._counter = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter):012x}"


class Emitter:
    def __init__(
        self,
        settings: EmitterSettings,
        transport: Transport,
        codec: Codec,
        *,
        name: str = "jobprov-python",
        max_queue: int = 100_000,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.codec = codec
        self.producer = Producer(name=name, version=__version__, instance_id=str(uuid.uuid4()))
        # The framing header goes in front of every body: the encoder writes it, saving a copy per event.
        self._envelope = EnvelopeEncoder(registry.current().schema, prefix=codec.header)
        self._event_ids = EventIds()
        self._redactor = Redactor(os.environ)
        # One sequence per job: gaps are detected per (emitter instance, job).
        self._seqs: dict[str, itertools.count[int]] = {}
        self._queue: collections.deque[tuple[Any, ...]] = collections.deque()
        self._max_queue = max_queue
        self._wake = threading.Event()
        self._send_lock = threading.Lock()
        self._stopping = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._failures: list[str] = []
        self._rejected = 0
        self._report: DeliveryReport | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._drainer: threading.Thread | None = None
        self._drain_stop = threading.Event()
        self._drain_sending = threading.Event()  # the broker answered: the drain is sending

    def drain_spool_in_background(self) -> None:
        """Send what earlier jobs left in the spool, without holding this job up (Kafka transports only)."""
        from jobprov.emitters.drain import broker_reachable, drain
        from jobprov.emitters.kafka import parse_kafka_url
        from jobprov.emitters.spool import spool_status

        settings = self.settings
        if not settings.enabled or not settings.url.startswith("kafka:"):
            return
        waiting = spool_status(settings.spool_dir)
        if not (waiting["sealed_segments"] or waiting["open_segments"]):
            return
        bootstrap, topic = parse_kafka_url(settings.url)

        def work() -> None:
            try:
                if broker_reachable(bootstrap, settings.kafka_config(), timeout=2.0, stop=self._drain_stop):
                    self._drain_sending.set()
                    report = drain(
                        settings.spool_dir,
                        bootstrap=bootstrap,
                        topic=topic,
                        codec=self.codec,
                        security=settings.kafka_config(),
                        stop=self._drain_stop,
                    )
                    for line in report.quarantined:  # rare, and the operator must hear of it
                        print(f"jobprov: damaged spool segment quarantined: {line}", file=sys.stderr, flush=True)
            except Exception as exc:  # the spool stays as it was; the next drain tries again
                log.debug("background drain failed: %s", exc)

        self._drainer = threading.Thread(target=work, name="jobprov-drain", daemon=True)
        self._drainer.start()

    # --- the hot path ----------------------------------------------------------------------------------

    def emit(self, job_id: str, payload: Any, *, event_time: datetime | float | None = None, attempt: int = 1) -> None:
        """Queue one event. Never raises."""
        try:
            if self._closed:
                self._failures.append(f"{type(payload).__name__} emitted after close; not recorded")
                return
            seq = self._seqs.get(job_id)
            if seq is None:
                seq = self._seqs[job_id] = itertools.count(1)
            queue = self._queue
            queue.append((job_id, payload, event_time, time.time(), next(seq), attempt))
            if self._thread is None:
                self._start()
            pending = len(queue)
            if pending >= self._max_queue:
                self._send_pending()  # backpressure: the caller does the work rather than grow memory
            elif not pending % _BATCH:
                self._wake.set()  # once per batch: setting an Event takes a lock, which costs more than emit
        except Exception as exc:  # the job must never see our failures
            self._failures.append(f"emit failed: {type(exc).__name__}: {exc}")

    # --- the sender ------------------------------------------------------------------------------------

    def _start(self) -> None:
        with self._send_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="jobprov-sender", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(_LINGER_S)
            self._wake.clear()
            self._send_pending()
            self.transport.poll()

    def _frame(self, batch: list[Framed], count: int) -> None:
        """Encode ``count`` queued events into ``batch``; one loop with everything bound locally, as this is
        where an event costs most of its time."""
        popleft, encode, new_id, producer = self._queue.popleft, self._envelope.encode, self._event_ids, self.producer
        redact, check = self._redactor.payload, check_event
        # Framed is a NamedTuple: tuple.__new__ builds one without its Python-level __new__ (a third the cost).
        append, new_tuple = batch.append, tuple.__new__
        for _ in range(count):
            job_id, payload, event_time, emitted_s, seq, attempt = popleft()
            try:
                emitted_ms = int(emitted_s * 1000)
                when = emitted_ms if event_time is None else event_time_ms(event_time, emitted_s)
                check(payload, when)
                payload = redact(payload)
                event_id = new_id()
                value = encode(event_id, job_id, payload.__class__.__name__, when, emitted_ms, producer, seq, attempt,
                               payload)  # fmt: skip
                append(new_tuple(Framed, (job_id, value, event_id)))
            except InvalidEventError as exc:
                self._rejected += 1
                self._failures.append(f"{REJECTED}{type(payload).__name__}: {exc}")
            except Exception as exc:
                self._failures.append(f"{type(payload).__name__} not recorded: {exc}")

    def _send_pending(self) -> None:
        with self._send_lock:
            self._send_locked()

    def _send_locked(self) -> None:
        while self._queue:
            self._idle.clear()
            batch: list[Framed] = []
            self._frame(batch, min(_BATCH, len(self._queue)))
            try:
                self.transport.send(batch)
            except Exception as exc:
                self._failures.append(f"transport {self.transport.name} failed: {exc}")
        self._idle.set()

    # --- shutdown --------------------------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued has been handed to the transport; True if it was in time."""
        if self._thread is None and not self._queue:
            return True
        # The caller hands over what is left itself, once the sender is out of the way: waiting for the sender to
        # wake and polling until it is done cost every job ~1 ms at its end.
        if not self._send_lock.acquire(timeout=max(timeout, 0.0)):
            return False
        try:
            self._send_locked()
        finally:
            self._send_lock.release()
        return True

    def close(self, timeout: float | None = None) -> DeliveryReport:
        """Deliver or spool everything, within ``timeout`` (default: the flush timeout). Idempotent."""
        if self._report is not None:
            return self._report
        timeout = self.settings.flush_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self._closed = True
        self._stopping = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(max(0.0, min(1.0, deadline - time.monotonic())))
        try:
            self._send_pending()
            report = self.transport.close(max(0.0, deadline - time.monotonic()))
        except Exception as exc:
            report = DeliveryReport(errors=[f"closing {self.transport.name} failed: {exc}"])
        if self._drainer is not None:
            # The job does not wait for the drain. A drain cut short keeps in the spool what the broker did not
            # acknowledge; anything sent twice keeps its event_id and is deduplicated downstream.
            if self._drain_sending.is_set():
                self._drainer.join(max(0.0, min(DRAIN_GRACE_S, deadline - time.monotonic())))
            self._drain_stop.set()
            self._drainer.join(max(0.0, min(0.2, deadline - time.monotonic())))
        # Messages quote the caller's values (a rejected metric's name, an exception): they leave redacted.
        report.errors = [self._redactor.text(e) for e in self._failures + report.errors]
        report.rejected = self._rejected
        self._report = report
        _tell(report, self.settings)
        return report


def _tell(report: DeliveryReport, settings: EmitterSettings) -> None:
    """One line on stderr when anything did not reach the broker; nothing when all is well."""
    try:
        if report.spooled and settings.url.startswith("kafka:"):
            print(
                f"jobprov: {report.spooled} events could not be delivered to {settings.url}; they are in the "
                f"spool at {report.spool_dir} and will be sent by `jobprov spool drain` or the next job",
                file=sys.stderr,
                flush=True,
            )
        rejections = [e[len(REJECTED) :] for e in report.errors if e.startswith(REJECTED)]
        others = [e for e in report.errors if not e.startswith(REJECTED)]
        if report.rejected:
            print(
                f"jobprov: {report.rejected} invalid events not recorded; {'; '.join(rejections[:5])}",
                file=sys.stderr,
                flush=True,
            )
        if report.lost or others:
            print(f"jobprov: {report.lost} events lost; {'; '.join(others[:5])}", file=sys.stderr, flush=True)
    except (OSError, ValueError):  # a closed stderr must not turn into an exception at exit
        return


# --- the process-wide emitter --------------------------------------------------------------------------

_default: Emitter | None = None
_default_lock = threading.Lock()


def get_emitter(settings: EmitterSettings | None = None, *, name: str = "jobprov-python") -> Emitter:
    """The process's shared emitter, created on first use and closed at interpreter exit."""
    global _default
    with _default_lock:
        if _default is None or _default._pid != os.getpid():
            _default = create_emitter(settings, name=name)
            atexit.register(_default.close)
        return _default


def create_emitter(settings: EmitterSettings | None = None, *, name: str = "jobprov-python") -> Emitter:
    """An emitter from settings. Problems degrade, never into an exception, and never to a destination that
    was not configured: configuration that cannot be read sends events to the default spool only; a transport
    that cannot be made keeps them in the configured spool, or records nothing. One line on stderr says which."""
    import dataclasses

    from jobprov.emitters.factory import make_codec, make_transport
    from jobprov.errors import JobprovError
    from jobprov.settings import load_emitter_settings

    try:
        settings = settings or load_emitter_settings()
    except JobprovError as exc:
        default = EmitterSettings()
        spool_only = dataclasses.replace(default, url=f"file://{default.spool_dir}")
        return _degraded(spool_only, f"configuration error: {exc}", name)
    try:
        emitter = Emitter(settings, make_transport(settings), make_codec(settings), name=name)
    except JobprovError as exc:
        return _degraded(settings, str(exc), name)
    emitter.drain_spool_in_background()
    return emitter


def _degraded(settings: EmitterSettings, problem: str, name: str) -> Emitter:
    """An emitter that keeps events in ``settings``' spool, or records nothing if even that is impossible."""
    from jobprov.emitters.noop import NoopTransport
    from jobprov.emitters.spool import SpoolTransport
    from jobprov.errors import JobprovError
    from jobprov.schemas.wire import SingleObjectCodec

    try:
        transport: Transport = SpoolTransport(settings.spool_dir)
        where = f"events go to the spool at {settings.spool_dir}"
    except JobprovError as exc:
        transport = NoopTransport()
        where = f"{exc}; events are not recorded"
    with contextlib.suppress(OSError, ValueError):  # a closed stderr is no reason to fail the job
        print(f"jobprov: {problem}; {where}", file=sys.stderr, flush=True)
    return Emitter(settings, transport, SingleObjectCodec(), name=name)


def _reset_after_fork() -> None:
    # A forked child must not share the parent's sender thread or librdkafka handle.
    global _default
    _default = None


os.register_at_fork(after_in_child=_reset_after_fork)
