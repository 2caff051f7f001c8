"""The helpers behind the definitions: resources, partitions, checks, naming, the day's
write-audit-publish and the sources it asks."""
