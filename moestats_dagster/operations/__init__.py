"""Operating it from a terminal: the `moestats` command (cli), the demo and `moestats backfill`
(demo, launch: the UI's backfills followed in a progress bar) (the doctor's probes live with the Dagster
job that runs them too, in orchestration/lib/doctor.py)."""
