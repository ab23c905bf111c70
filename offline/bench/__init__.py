"""Benchmarks (DESIGN section 8) and the loopback harness that replays a recording through a daemon.

Ratios are measured side by side in one run; raw numbers go to ``bench_results/``.
"""
