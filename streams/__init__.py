"""Sources: the sensor registry, record validation, envelopes, partitioning, producers."""
