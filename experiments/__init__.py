"""Replays and benchmarks: `python -m experiments.toy`, `python -m experiments.grokking`."""
