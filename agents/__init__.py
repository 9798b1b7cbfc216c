"""Around the detection core: the worker, alerts, access control, the web server, the CLI and tools."""
