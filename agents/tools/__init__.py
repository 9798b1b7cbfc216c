"""Tools beside the worker: the demo and the benchmarks."""
