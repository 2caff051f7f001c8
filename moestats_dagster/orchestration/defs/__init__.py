"""What the Dagster UI shows: asset families, schedules, sensors and the doctor job."""
