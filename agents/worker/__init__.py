"""The worker: the Faust app, one runner per owned source partition, and what it publishes."""
