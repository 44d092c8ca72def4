"""Exports of jobs and artifacts in other tools' formats: OpenLineage RunEvents, W3C PROV."""
