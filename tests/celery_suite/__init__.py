"""Celery 5.7's own canvas integration tests, converted to run through celeriac.

``bash scripts/celery-canvas-suite`` fetches Celery's sdist, rewrites the
dispatches of ``t/integration/test_canvas.py`` (``convert``), runs the
converted tests natively and through celeriac on one Redis broker and result
backend (``fixtures``, ``dispatch``), and prints the counts (``tally``).
"""
