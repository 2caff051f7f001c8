"""The Dagster side: what the UI shows, what it is made of, and what the instance loads.

- `build.py`: `build_definitions`, the one build path; `component.py`: the `MoEngageStats`
  Component over it.
- `defs/`: the definitions the UI shows, one file per asset family (stats, campaigns, flows,
  summary, periods, report, coverage, maintenance), the schedules, the sensors (automation,
  alerts) and the doctor job.
- `lib/`: the helpers behind them (resources, partitions, check specs, naming and metadata,
  retries, the day's write-audit-publish, metadata and flow sources, the doctor's probes).
- `instance/`: the plug-ins only dagster.yaml names (event log storage, run coordinator).
"""
