"""The embedded default's local services (a Kafka-protocol broker on this machine)."""
