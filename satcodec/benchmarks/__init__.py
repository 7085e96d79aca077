"""Benchmarks that may combine the codec and research code (neither imports the other)."""
