"""ClickHouse tables for derived records: the embedded engine (chdb) or a server, through clickhouse-connect."""
