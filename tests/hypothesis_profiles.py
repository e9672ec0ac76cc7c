"""Hypothesis profiles (``pytest --hypothesis-profile=NAME``), registered at import.

- ``ci`` (the default): a fixed seed, so that every CI run draws the same
  canvases; at least 200 of them in the random-canvas test.
- ``long``: 2,000 random canvases on PostgreSQL with prefork worker processes
  (``CELERIAC_LONG_EXAMPLES`` sets another number)::

      bash scripts/test --hypothesis-profile=long \\
          tests/integration/test_random_canvases.py

  It draws anew on each run; ``--hypothesis-seed=N`` draws a given set
  again (``CELERIAC_LONG_EXAMPLES=300 ... --hypothesis-seed=7``).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

#: one worker serves every example of a test: function-scoped on purpose
_SHARED = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]

settings.register_profile(
    "ci",
    max_examples=200,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=_SHARED,
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("CELERIAC_LONG_EXAMPLES", "2000")),
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=_SHARED,
)
settings.load_profile("ci")
