"""Rule-based detectors."""
