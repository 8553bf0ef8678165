"""Helpers of benchmarks/bench_scale.py (atlas-scale wall time and peak memory)."""
