"""In-job emitters: the Python API, `jobprov run` / `jobprov emit`, and the transports they write to."""
