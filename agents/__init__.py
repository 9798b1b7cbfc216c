"""The Faust app, its agents, the CLI, the live console and the benchmark."""
