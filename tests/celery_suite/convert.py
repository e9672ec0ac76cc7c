"""Rewrite Celery's canvas tests so that every dispatch goes through ``dispatch``.

Only calls change; every test name and assertion stays as Celery wrote it:

- ``X.apply_async(...)`` becomes ``_celeriac_.apply_async(X, ...)``;
- ``X.delay(...)`` becomes ``_celeriac_.delay(X, ...)``;
- a call of anything but an attribute, a builtin or a name the module imports
  or defines (``c()``, ``chain(...)()``, ``(a | b)()``) becomes
  ``_celeriac_.call(c, ...)``, which dispatches a chain, group or chord and
  calls anything else as it is.

``.get()`` is not rewritten: in celeriac mode the result it is called on is a
``dispatch.WorkflowResult``, whose ``get()`` is ``Workflow.get()``.
"""

from __future__ import annotations

import ast
import builtins

ALIAS = "_celeriac_"
IMPORT = f"import tests.celery_suite.dispatch as {ALIAS}"
#: attribute calls that dispatch, and the helper each becomes
DISPATCHES = {"apply_async": "apply_async", "delay": "delay"}
#: names whose calls are never a canvas (as are the module's own)
BUILTINS = frozenset(dir(builtins))


class _Rewriter(ast.NodeTransformer):
    def __init__(self, plain: frozenset[str]) -> None:
        self.plain = plain
        self.counts = {"apply_async": 0, "delay": 0, "call": 0}

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in DISPATCHES:
            helper = DISPATCHES[func.attr]
            self.counts[helper] += 1
            return self._helper(helper, [func.value, *node.args], node)
        if isinstance(func, ast.Attribute | ast.Lambda):
            return node
        if isinstance(func, ast.Name) and func.id in self.plain:
            return node
        self.counts["call"] += 1
        return self._helper("call", [func, *node.args], node)

    @staticmethod
    def _helper(name: str, args: list[ast.expr], node: ast.Call) -> ast.Call:
        helper = ast.Attribute(ast.Name(ALIAS, ast.Load()), name, ast.Load())
        return ast.copy_location(ast.Call(helper, args, node.keywords), node)


def convert(source: str) -> tuple[str, dict[str, int]]:
    """The converted module's source, and how many calls of each kind changed."""
    tree = ast.parse(source)
    rewriter = _Rewriter(BUILTINS | _module_names(tree))
    tree = rewriter.visit(tree)
    tree.body.insert(0, ast.parse(IMPORT).body[0])
    ast.fix_missing_locations(tree)
    return ast.unparse(tree) + "\n", rewriter.counts


def _module_names(tree: ast.Module) -> frozenset[str]:
    """The names a module imports, or defines with ``def`` or ``class``."""
    names: set[str] = set()
    for statement in tree.body:
        if isinstance(statement, ast.Import | ast.ImportFrom):
            names.update(
                (alias.asname or alias.name).partition(".")[0]
                for alias in statement.names
            )
        elif isinstance(statement, ast.FunctionDef | ast.ClassDef):
            names.add(statement.name)
    return frozenset(names)
