"""The simulated city: telemetry, its reference data and seeded incidents with their ground truth."""
