"""The data model: every table declared once (schemas), the pure normalizer from the API's
payloads to those tables (normalize, frames), the checks and anomaly rules over them, and the
SQL of the summary views. No I/O and no Dagster here."""
