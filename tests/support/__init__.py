"""Helpers shared by the test files, importable as `support.<module>` (pyproject puts tests/ on
pytest's and mypy's path): test doubles, builders and small drivers, never tests or fixtures.
Test files cannot import each other under --import-mode=importlib, so what two share lives here."""
