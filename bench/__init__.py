"""Hand-run benchmarks of devicelink, never part of the tests (see README.md):
``python -m bench.run`` (the harness; ``--smoke`` in CI), ``python -m bench.soak`` and
``python -m bench.seed``, from the repository's root."""
