"""The project's benchmarks: thin command-line scripts over the library ``benchmarks.lib``.

Run one from the repository root as ``python -m benchmarks.<name>`` (the canonical form) or as
``python benchmarks/<name>.py`` (``benchmarks/_path.py``); docs/benchmarks.md lists them."""
