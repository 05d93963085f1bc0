"""Benchmarks: Minga against the Channels tutorial (B0, B1) and a bare ceiling (C0), in one run.

`python -m bench` (or `make bench`) starts every server itself on loopback ports, drives them
with the same asyncio load generator (bench/loadgen.py), prints a table of figures and ratios
and writes bench/results/latest.json. `--smoke` runs small loads in under two minutes and fails
only if a benchmark cannot run or loses messages. docs/performance.md explains the metrics.
"""
