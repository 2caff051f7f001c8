"""Storage: the DuckLake lake (local folder or object storage, catalog in SQLite or
PostgreSQL), its locks, the atomic publish of a partition, maintenance, and the read-only way
in for people (`connect`, `moestats query`). No Dagster here."""
