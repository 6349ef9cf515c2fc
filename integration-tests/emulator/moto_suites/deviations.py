"""The AWS-faithful deviations from moto, as listed in the emulator README (a markdown table).

The table lives in the README subsection whose heading is :data:`HEADING`; each row is
``| `node id` | the AWS behaviour the extension follows | reference (AWS doc URL) |``. A test listed there is
expected to fail with the extension and pass on plain moto: moto's test asserts moto's behaviour, which
AWS does not have.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HEADING = "### moto's own suites: where the extension follows AWS, not moto"


@dataclass(frozen=True)
class Deviation:
    node_id: str
    behaviour: str
    reference: str


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse(readme: Path) -> dict[str, Deviation]:
    """node id -> Deviation; ValueError if the subsection or its table is missing or malformed."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == HEADING)
    except StopIteration:
        raise ValueError(f"{readme}: no subsection {HEADING!r}") from None
    rows: list[list[str]] = []
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        if line.lstrip().startswith("|"):
            rows.append(_cells(line))
        elif rows:
            break
    if len(rows) < 2 or not set(rows[1][0]) <= set("-: "):
        raise ValueError(f"{readme}: no table (header and separator rows) under {HEADING!r}")
    found: dict[str, Deviation] = {}
    for cells in rows[2:]:
        if len(cells) != 3 or not all(cells):
            raise ValueError(f"{readme}: deviation row needs 3 non-empty cells: {cells}")
        node_id = cells[0].strip("`")
        if "::" not in node_id or node_id in found:
            raise ValueError(f"{readme}: bad or repeated test node id {cells[0]!r}")
        if "http" not in cells[2]:
            raise ValueError(f"{readme}: deviation {node_id} has no reference URL")
        found[node_id] = Deviation(node_id, cells[1], cells[2])
    return found
