"""Benchmarks (`make bench`, docs/benchmarks.md): every figure is measured next to a baseline in the same run.

Run one alone with `python -m bench.<name> --n SIZE` (DJANGO_SETTINGS_MODULE=bench.settings), all of them
with `python -m bench`. They use their own database (gpucloud_bench) and never the test or dev databases.
"""
