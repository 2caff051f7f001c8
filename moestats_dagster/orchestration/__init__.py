"""The Dagster definitions: assets and their checks, partitions, jobs, schedules, sensors,
resources, the run coordinator, Slack alerts and the `MoEngageStats` Component. Everything that
imports Dagster to describe the pipeline lives here; `build.build_definitions` wires it."""
