"""Online (learning) detectors."""
