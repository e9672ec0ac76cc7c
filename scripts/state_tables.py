"""Draw the state tables of celeriac/states.py into docs/concepts.md.

``python scripts/state_tables.py`` rewrites the sections between the
``<!-- generated: ... -->`` and ``<!-- end generated -->`` markers;
``--check`` changes nothing and fails when a section differs from the table
(scripts/check runs it), so the page cannot drift from the code.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from celeriac.states import (
    NODE_TRANSITIONS,
    WORKFLOW_TRANSITIONS,
    NodeKind,
    WorkflowState,
    starts_under,
)

PAGE = Path(__file__).resolve().parent.parent / "docs" / "concepts.md"
SECTION = re.compile(
    r"(<!-- generated: (?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- end generated -->)",
    re.DOTALL,
)


def states(names: Iterable[str]) -> str:
    """``A``, ``B`` as Markdown code; "any" for every workflow state."""
    listed = list(names)
    if set(listed) == set(WorkflowState):
        return "any"
    if set(listed) == set(WorkflowState) - {WorkflowState.CANCELLED}:
        return "any but `CANCELLED`"
    return ", ".join(f"`{name}`" for name in listed)


def row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def workflow_table() -> str:
    lines = [row(("trigger", "from", "to", "who, and why")), row(("---",) * 4)]
    for edge in WORKFLOW_TRANSITIONS:
        source = edge["source"]
        sources = [source] if isinstance(source, str) else source
        lines.append(
            row(
                (
                    f"`{edge['trigger']}`",
                    states(sources),
                    f"`{edge['dest']}`",
                    str(edge["reason"]),
                )
            )
        )
    return "\n".join(lines) + "\n"


def node_table() -> str:
    header = ("trigger", "from", "to", "kinds", "workflow", "why")
    lines = [row(header), row(("---",) * len(header))]
    for edge in NODE_TRANSITIONS:
        lines.append(
            row(
                (
                    f"`{edge.trigger}`",
                    ", ".join(f"`{state}`" for state in edge.source),
                    f"`{edge.dest}`",
                    ", ".join(f"`{kind}`" for kind in edge.kinds),
                    states(edge.workflow),
                    edge.reason,
                )
            )
        )
    return "\n".join(lines) + "\n"


def start_table() -> str:
    lines = [row(("kind", "may start while its workflow is")), row(("---",) * 2)]
    for kind in NodeKind:
        under = starts_under(kind)
        shown = states(under) if under else "never: it completes in the database"
        lines.append(row((f"`{kind}`", shown)))
    return "\n".join(lines) + "\n"


TABLES: dict[str, Callable[[], str]] = {
    "workflow-transitions": workflow_table,
    "node-transitions": node_table,
    "node-starts": start_table,
}


def render(text: str) -> str:
    """``text`` with every generated section drawn afresh."""

    def draw(match: re.Match[str]) -> str:
        table = TABLES[match["name"]]()
        return f"{match[1]}{table}{match[4]}"

    return SECTION.sub(draw, text)


def main(argv: list[str]) -> int:
    text = PAGE.read_text()
    found = {match["name"] for match in SECTION.finditer(text)}
    if found != set(TABLES):
        print(f"{PAGE}: generated sections {sorted(found)}, want {sorted(TABLES)}")
        return 1
    drawn = render(text)
    if "--check" in argv:
        if drawn != text:
            print(f"{PAGE} is out of date: run python scripts/state_tables.py")
            return 1
        return 0
    PAGE.write_text(drawn)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
