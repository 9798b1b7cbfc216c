"""The ``warden`` command line: each command parses, calls the domain code and prints."""
