"""Benchmarks of scenario_uni1 against the official scenario-sdk (PyPI), on the local emulator.

`python -m bench` (or `make bench`) takes the figures of shared/benchmarks.md and writes
bench/RESULTS.md; `--quick` is a short version, `--only P1,P7` a subset. Not tests: nothing
here fails on a speed figure.
"""
