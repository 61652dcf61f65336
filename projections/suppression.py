"""Small-cell suppression for published counts (ANA-2): pure, no database, no I/O.

A two-way table of counts is published with its row totals, column totals and grand total. Two
passes make it safe:

- Primary: every cell (inner cell or total) with a count from 1 to `threshold - 1` is withheld.
  Zeros are shown. A zero names no one, and withholding every zero would hide most of a sparse
  table while adding no protection that the totals would not give away anyway. Everything
  published is therefore either 0 or at least `threshold`, at every level (cells, row and column
  totals, grand total).
- Complementary: enough further cells are withheld that no withheld cell can be worked out from
  what is published. Think of the table with its totals as a bipartite graph: one node per row
  and per column of the extended table (totals included), one edge per withheld cell. A withheld
  cell can be computed from the published ones exactly when its edge is a bridge (cutting it
  splits its component; the sums on one side then give its value). When every withheld cell is
  on a cycle, adding +1 and -1 alternately round the cycle keeps every row and column sum, and
  since only cells of at least 1 are withheld, both moves stay non-negative: each withheld cell
  has at least three consistent values. So the pass adds withheld cells (never zeros, smallest
  first, inner cells before totals) until no withheld cell is a bridge. If that cannot be done
  (rare, in very sparse tables) the whole table is withheld rather than risk one cell.
- Linked: a two-way table can be told how its margins were published in their own one-way
  tables; it then shows them exactly so and takes complements among inner cells only.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

Cell = tuple[int, int]


@dataclass(frozen=True)
class SuppressedTable:
    """A published table, `None` wherever a count is withheld. `extended`: each row ends with
    its total, and a last row holds the column totals and the grand total."""

    extended: tuple[tuple[int | None, ...], ...]

    @property
    def cells(self) -> list[list[int | None]]:
        return [list(row[:-1]) for row in self.extended[:-1]]

    @property
    def row_totals(self) -> list[int | None]:
        return [row[-1] for row in self.extended[:-1]]

    @property
    def column_totals(self) -> list[int | None]:
        return list(self.extended[-1][:-1])

    @property
    def grand_total(self) -> int | None:
        return self.extended[-1][-1]


def extend(counts: Sequence[Sequence[int]]) -> list[list[int]]:
    """The table with a total at the end of each row and a row of column totals below."""
    width = len(counts[0]) if counts else 0
    rows = [[*row, sum(row)] for row in counts]
    totals = [sum(row[j] for row in rows) for j in range(width + 1)]
    return [*rows, totals]


def suppress(counts: Sequence[Sequence[int]], threshold: int,
             row_totals_published: Sequence[int | None] | None = None,
             column_totals_published: Sequence[int | None] | None = None) -> SuppressedTable:
    """Withhold small cells and their complements; see the module's note.

    Linked tables: `row_totals_published` is how the rows' own one-way table was published
    (`None` where withheld), and likewise for the columns. The margins then follow it exactly
    and complements are taken among inner cells only, so that a reader holding both tables
    learns no more than from each. The grand total is withheld only when it is small itself,
    never as a complement: every table of a measure shows the same grand total or none."""
    if any(len(row) != len(counts[0]) for row in counts):
        raise ValueError("every row of a table needs the same number of columns")
    if any(value < 0 for row in counts for value in row):
        raise ValueError("counts are never negative")
    table = extend(counts)
    height, width = len(table), len(table[0])
    withheld = {(i, j) for i, row in enumerate(table) for j, value in enumerate(row)
                if 0 < value < threshold}
    fixed = {(height - 1, width - 1)}  # the grand total: never a complement
    if width == 2:  # one column: its total is the grand total again
        fixed.add((height - 1, 0))
    if height == 2:  # one row: likewise
        fixed.add((0, width - 1))
    for published, margin in ((row_totals_published, lambda k: (k, width - 1)),
                              (column_totals_published, lambda k: (height - 1, k))):
        if published is None:
            continue
        for k, value in enumerate(published):
            cell = margin(k)
            fixed.add(cell)
            if value is None:
                withheld.add(cell)
            else:
                withheld.discard(cell)
    if not _protect(table, withheld, fixed):
        withheld = {(i, j) for i, row in enumerate(table) for j in range(len(row))}
    return SuppressedTable(tuple(
        tuple(None if (i, j) in withheld else value for j, value in enumerate(row))
        for i, row in enumerate(table)))


def _protect(table: list[list[int]], withheld: set[Cell], fixed: set[Cell]) -> bool:
    """Add complementary cells (never a `fixed` one) until no withheld cell is a bridge.
    False if it cannot."""
    while (bridge := _a_bridge(withheld)) is not None:
        path = _cheapest_path(table, withheld - {bridge}, bridge, fixed)
        if path is None:
            return False
        withheld.update(path)  # the bridge and the path make a cycle
    return True


def _cheapest_path(table: list[list[int]], withheld: set[Cell], bridge: Cell,
                   fixed: set[Cell]) -> list[Cell] | None:
    """The cells of the cheapest path from the bridge's row to its column, through withheld
    cells (free) and non-zero published ones (their count, a total a little dearer than an
    inner cell of the same count, so that readers keep the totals where possible)."""
    height, width = len(table), len(table[0])

    def weight(cell: Cell) -> float:
        if cell in withheld:
            return 0.0
        inner = cell[0] < height - 1 and cell[1] < width - 1
        return table[cell[0]][cell[1]] + (0.0 if inner else 0.5)

    start, goal = ("r", bridge[0]), ("c", bridge[1])
    best: dict[tuple[str, int], float] = {start: 0.0}
    came: dict[tuple[str, int], tuple[tuple[str, int], Cell]] = {}
    queue: list[tuple[float, tuple[str, int]]] = [(0.0, start)]
    while queue:
        cost, node = heapq.heappop(queue)
        if node == goal:
            path = []
            while node != start:
                node, cell = came[node]
                path.append(cell)
            return path
        if cost > best[node]:
            continue
        kind, n = node
        steps = ([(("c", j), (n, j)) for j in range(width)] if kind == "r"
                 else [(("r", i), (i, n)) for i in range(height)])
        for other, cell in steps:
            if cell == bridge or (cell not in withheld
                                  and (table[cell[0]][cell[1]] == 0 or cell in fixed)):
                continue
            total = cost + weight(cell)
            if total < best.get(other, float("inf")):
                best[other], came[other] = total, (node, cell)
                heapq.heappush(queue, (total, other))
    return None


def _component(edges: set[Cell], start: tuple[str, int]) -> set[tuple[str, int]]:
    seen, todo = {start}, [start]
    while todo:
        kind, n = todo.pop()
        for i, j in edges:
            other = ("c", j) if kind == "r" and i == n else ("r", i) if kind == "c" and j == n \
                else None
            if other is not None and other not in seen:
                seen.add(other)
                todo.append(other)
    return seen


def _a_bridge(edges: set[Cell]) -> Cell | None:
    """A withheld cell whose removal disconnects its row from its column, if any (smallest
    first, so that the result does not depend on set order)."""
    for cell in sorted(edges):
        if ("c", cell[1]) not in _component(edges - {cell}, ("r", cell[0])):
            return cell
    return None
