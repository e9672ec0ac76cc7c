"""Benchmarks: celeriac side by side with native Celery (see README.md)."""
