"""Stream processors: the pure fold of events into job state and provenance records, and its workers."""
