"""The product's benchmarks: each script compares settings side by side in one process and prints markdown
tables (docs/benchmarks.md lists them). Run one from the checkout's root, ``python -m bench.bench_sampling``.
``harness`` is what they share; ``measures`` the measures only they use.
"""
