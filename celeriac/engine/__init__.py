"""Everything that knows Celery: compiler, scheduler, worker hooks, the Engine."""

from celeriac.engine.engine import Engine
from celeriac.engine.handle import Workflow

__all__ = ["Engine", "Workflow"]
