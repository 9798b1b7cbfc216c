"""The worker's web server: the HTTP API, the command-centre console and /metrics."""
