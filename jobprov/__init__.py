"""jobprov: record each job's provenance as it runs, and compare like with like.

The in-job API is small::

    import jobprov

    with jobprov.job(name="validate_drp", provenance={"dataset": "testdata_hsc", "band": "r"}) as job:
        job.metric("AM1", 3.2, unit="mas")

Nothing here raises into the job: failures to deliver events end in the local spool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobprov.errors import ConfigError, JobprovError

__version__ = "0.1.0"

if TYPE_CHECKING:
    from jobprov.emitters.job import Job


def job(name: str | None = None, **kwargs: Any) -> Job:
    """Open a job (context manager or decorator). See :class:`jobprov.emitters.job.Job`."""
    # Imported here so `import jobprov` stays cheap for tools that only need the version.
    from jobprov.emitters.job import Job

    return Job(name=name, **kwargs)


__all__ = ["ConfigError", "JobprovError", "__version__", "job"]
