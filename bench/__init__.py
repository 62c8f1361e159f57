"""Benchmarks of boost-ledger, side by side with raw PostgreSQL (pgbench) and peer event stores.

Run ``python -m bench.run`` (``make bench``); ``--quick`` for a short smoke run. A benchmark is
not a test: it prints figures and writes a report under ``bench/results/``; it never fails on a
time.
"""
