"""Per-entity columnar state, window ring buffers, checkpoints, the embedded Redis."""
