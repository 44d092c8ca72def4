"""The event model: .avsc files under ``avro/`` are the source of truth; ``models`` mirrors them in Python."""
