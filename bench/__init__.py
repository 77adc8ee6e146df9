"""Benchmarks and load runs for Nimbus DataModel: ``python -m bench --help``.

Figures are recorded by hand in ``bench/README.md`` with the machine and the date; nothing here
asserts a timing. Every address used is loopback.
"""
