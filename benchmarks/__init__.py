"""Load generators and benchmarks of the engine; results in ``benchmarks/RESULTS.md``."""
