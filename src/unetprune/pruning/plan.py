"""Sensitivity-guided pruning to a budget: one ratio per prunable group, chosen from the sweep.

The sweep (:mod:`.sensitivity`) measured, for every prunable group ``g`` and every ratio
``r`` of ``sensitivity.ratios``, how much worse the verdict metric gets when ``g`` alone is
pruned at ``r``.  A plan picks one ratio per swept group (or leaves it whole, ratio 0) so
that the summed degradation is smallest while the model fits a budget: a multiple-choice
knapsack, solved exactly by :func:`solve_mck` (dynamic programming on a cost grid).

Cost model.  The cost of a group at ratio ``r`` is what the model would cost with that group
alone pruned (``params``/``macs_*`` from the family's exact width cost; latency from a table
measured on the target device, :func:`latency_table`).  The knapsack adds these per-group
savings; the true cost is not quite additive (a conv between two pruned groups loses both its
input and its output channels), so the plan is measured exactly after every solve and, while
it is over the budget, solved again with the capacity lowered by the excess.

Reaching the budget.  The sweep's ratios are coarse; the best set of them may stop well
short of the budget.  For ``params``/``macs_*`` targets the plan then gives filters back,
one width at a time, to the chosen groups whose sweep curve says a filter there is worth
the most degradation per unit of cost (degradation linear between the group's sweep
points), until the measured cost is within ``tol`` below the target.  Latency plans skip that
step (a measured latency is noisy); their prediction and measurement are both recorded.

Degradation.  A group's degradation at ratio ``r`` is the monotone envelope of the sweep's
points: ``max(0, worst degradation at any swept ratio <= r)``.  Pruning more of a group
never counts as an improvement, so noise that made one point look better than the unpruned
model is not exploited.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from .importance import n_keep
from .surgery import PruningError

#: default number of cells of the knapsack's cost grid (see :func:`solve_mck`)
DEFAULT_GRID_CELLS = 4096
#: how often a plan is re-solved with a tighter capacity while its measured cost is over budget
MAX_RESOLVES = 8
#: the budget metrics a plan may target
TARGETS = ("params", "macs_physical", "macs_output", "latency_ms")


class InfeasibleBudget(PruningError):
    """No choice of ratios fits the capacity; ``min_cost`` is the smallest reachable cost."""

    def __init__(self, message: str, min_cost: float):
        super().__init__(message)
        self.min_cost = min_cost


@dataclass
class Solution:
    """A knapsack solution: the chosen option per item, its total cost and value, and the grid."""

    choice: list[int]
    cost: float
    value: float
    unit: float  # cost per grid cell
    cells: int  # cells of the grid (capacity / unit, floored)
    exact: bool  # True when the grid represents every cost exactly (integer costs, unit 1)


def grid_unit(
    costs: Sequence[Sequence[float]], capacity: float, max_cells: int = DEFAULT_GRID_CELLS
) -> float:
    """The cost grid's cell size.

    Integer costs with ``capacity <= max_cells``: unit 1 (every cost exact, the solution is the
    exact optimum).  Otherwise ``capacity / max_cells``: costs are rounded *up* to whole cells,
    so every solution the grid admits truly fits; the price is that a solution whose true cost
    lies within ``n_items`` cells of the capacity may be missed (at most ``n_items / max_cells``
    of the capacity: 0.3% for 12 groups on 4096 cells)."""
    integral = all(float(c).is_integer() for row in costs for c in row) and float(capacity).is_integer()
    if integral and capacity <= max_cells:
        return 1.0
    return max(float(capacity) / max_cells, np.finfo(float).tiny)


def solve_mck(
    costs: Sequence[Sequence[float]],
    values: Sequence[Sequence[float]],
    capacity: float,
    max_cells: int = DEFAULT_GRID_CELLS,
) -> Solution:
    """Multiple-choice knapsack: pick one option per item, minimising the summed ``values``
    with the summed ``costs`` at most ``capacity`` (costs >= 0).

    Dynamic programming over the cost grid of :func:`grid_unit`: ``best[j]`` is the least value
    of the items so far with grid cost exactly ``j``; each item's options extend it, and the
    argmins are kept to trace the choice back.  Ties go to the cheaper option, then the lower
    index.  Raises :class:`InfeasibleBudget` (with the smallest reachable cost) when even the
    cheapest option of every item exceeds ``capacity``."""
    if len(costs) != len(values) or any(len(c) != len(v) or not c for c, v in zip(costs, values)):
        raise ValueError("costs and values need one non-empty list of options per item, of equal lengths")
    if any(c < 0 or not math.isfinite(c) for row in costs for c in row):
        raise ValueError("knapsack costs must be finite and >= 0")
    min_cost = sum(min(row) for row in costs)
    if min_cost > capacity:
        raise InfeasibleBudget(
            f"no choice fits: the smallest reachable cost is {min_cost:g} > capacity {capacity:g}", min_cost
        )
    unit = grid_unit(costs, capacity, max_cells)
    cells = int(math.floor(capacity / unit + 1e-9))
    w = [[int(math.ceil(c / unit - 1e-9)) for c in row] for row in costs]
    if sum(min(row) for row in w) > cells:  # rounding up pushed the cheapest plan off the grid
        raise InfeasibleBudget(
            f"no choice fits the cost grid of {cells} cells of {unit:g}: the smallest reachable cost "
            f"is {min_cost:g} (capacity {capacity:g}); refine the grid",
            min_cost,
        )
    inf = math.inf
    best = np.full(cells + 1, inf)
    best[0] = 0.0
    back: list[np.ndarray] = []
    for wi, vi in zip(w, values):
        new = np.full(cells + 1, inf)
        arg = np.full(cells + 1, -1, dtype=np.int64)
        # cheaper options first, so ties keep the cheaper option
        for k in sorted(range(len(wi)), key=lambda k: (wi[k], k)):
            if wi[k] > cells:
                continue
            cand = np.full(cells + 1, inf)
            cand[wi[k] :] = best[: cells + 1 - wi[k]] + float(vi[k])
            better = cand < new
            new[better] = cand[better]
            arg[better] = k
        best, back = new, back + [arg]
    j = int(np.argmin(best))  # first index of the minimum: the least grid cost among the best
    choice = [0] * len(w)
    for i in range(len(w) - 1, -1, -1):
        k = int(back[i][j])
        choice[i] = k
        j -= w[i][k]
    cost = float(sum(costs[i][k] for i, k in enumerate(choice)))
    total = float(sum(values[i][k] for i, k in enumerate(choice)))
    return Solution(choice, cost, total, unit, cells, unit == 1.0)


# --- the sweep as knapsack options ---------------------------------------------------------------


def degradations(result: Mapping, metric: str, higher_is_better: bool) -> tuple[list[float], list[float]]:
    """``(ratios, degradation)`` of one group's sweep result, ratio 0 (unpruned, 0) first: the
    monotone envelope ``max(0, worst degradation at any swept ratio <= r)`` of ``metric``
    (positive = worse than ``metrics_full``)."""
    name = result.get("layer", "?")
    full = (result.get("metrics_full") or {}).get(metric)
    if full is None:
        raise PruningError(
            f"the sweep result of {name} has no unpruned {metric} (metrics_full); rerun `unetprune sweep`"
        )
    pts = []
    for r, m in zip(result["ratios"], result["metrics"]):
        if metric not in m:
            raise PruningError(f"the sweep result of {name} has no {metric} at ratio {r:g}")
        d = float(full) - float(m[metric]) if higher_is_better else float(m[metric]) - float(full)
        pts.append((float(r), d if math.isfinite(d) else math.inf))
    pts.sort()
    ratios, deg, worst = [0.0], [0.0], 0.0
    for r, d in pts:
        if r == 0.0:
            continue
        worst = max(worst, d)
        ratios.append(r)
        deg.append(worst)
    return ratios, deg


@dataclass
class Plan:
    """A plan: the ratio and width of every group it prunes, its predicted and measured cost."""

    metric: str  # the budget metric
    target: float  # absolute target (count, or ms)
    full: float  # the unpruned model's cost
    ratios: dict[str, float]  # chosen sweep ratio per group (0 = left whole)
    widths: dict[str, int]  # kept filters per group (after any filling)
    degradation: float  # predicted summed degradation (sweep envelope, interpolated for filled widths)
    predicted: float  # the additive model's cost of the knapsack's choice
    measured: float  # the exact cost of ``widths`` (params/MACs), or the additive prediction (latency)
    filled: dict[str, int] = field(default_factory=dict)  # groups given filters back: their width
    solves: int = 1
    grid: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "metric": self.metric,
            "target": self.target,
            "full": self.full,
            "ratios": dict(self.ratios),
            "widths": dict(self.widths),
            "filled": dict(self.filled),
            "predicted_degradation": self.degradation,
            "predicted": self.predicted,
            "measured": self.measured,
            "solves": self.solves,
            "grid": dict(self.grid),
        }


def _interp(x: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    return float(np.interp(x, xs, ys))


def plan_widths(
    options: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    base_widths: Mapping[str, int],
    cost: Callable[[Mapping[str, int]], float],
    target: float,
    metric: str,
    tol: float = 0.01,
    fill: bool = True,
    max_cells: int = DEFAULT_GRID_CELLS,
    group_cost: Callable[[str, int], float] | None = None,
) -> Plan:
    """Choose one option per group of ``options`` (``group -> (ratios, degradation)``, ratio 0
    first) so that ``cost(widths) <= target`` with the least summed degradation.

    ``cost({group: width})`` is the model's cost with those widths (absent groups whole);
    ``group_cost(group, width)`` the cost with only that group changed (default ``cost``), whose
    savings the knapsack adds.  ``fill`` gives filters back until the measured cost is within
    ``tol`` below ``target`` (see the module doc).  Raises :class:`InfeasibleBudget` with one line
    naming the smallest reachable cost."""
    group_cost = group_cost or (lambda g, w: cost({g: w}))
    names = list(options)
    full = float(cost({}))
    widths_of = {g: [n_keep(base_widths[g], r) for r in options[g][0]] for g in names}
    saving = {g: [full - float(group_cost(g, w)) for w in widths_of[g]] for g in names}
    top = {g: max(s) for g, s in saving.items()}
    base = full - sum(top.values())
    costs = [[top[g] - s for s in saving[g]] for g in names]
    values = [list(options[g][1]) for g in names]
    # the cheapest option of every group (its largest saving): the smallest reachable cost
    cheapest = {g: widths_of[g][int(np.argmax(saving[g]))] for g in names}
    smallest = float(cost({g: w for g, w in cheapest.items() if w != base_widths[g]})) if names else full
    if target >= full:
        return Plan(metric, target, full, {g: 0.0 for g in names}, {}, 0.0, full, full)

    def infeasible(reachable: float) -> InfeasibleBudget:
        return InfeasibleBudget(
            f"cannot plan {metric} <= {_fmt(target, metric)} ({target / full:.2%} of the original "
            f"{_fmt(full, metric)}): the smallest reachable with the sweep's ratios and layers is "
            f"{_fmt(reachable, metric)} ({reachable / full:.2%}); raise the target, or sweep more "
            f"layers or higher ratios",
            reachable,
        )

    if smallest > target:
        raise infeasible(smallest)
    solves = 0

    def attempt(capacity: float):
        nonlocal solves
        solves += 1
        sol = solve_mck(costs, values, max(capacity, 0.0), max_cells)
        widths = {g: widths_of[g][k] for g, k in zip(names, sol.choice) if options[g][0][k] > 0}
        return sol, widths, float(cost(widths))

    # capacity 0 = the cheapest option of every group: its measured cost is `smallest` <= target
    feasible = []
    capacity = target - base
    for _ in range(MAX_RESOLVES):
        sol, widths, measured = attempt(capacity)
        if measured <= target:
            feasible.append((sol.value, -measured, sol, widths, measured))
            break
        capacity -= measured - target
    if not feasible:  # the additive model kept underestimating: bisect the capacity
        lo, hi = 0.0, capacity
        sol, widths, measured = attempt(lo)
        feasible.append((sol.value, -measured, sol, widths, measured))
        for _ in range(MAX_RESOLVES):
            mid = 0.5 * (lo + hi)
            sol, widths, measured = attempt(mid)
            if measured <= target:
                feasible.append((sol.value, -measured, sol, widths, measured))
                lo = mid
            else:
                hi = mid
    _, _, sol, widths, measured = min(feasible, key=lambda f: (f[0], f[1]))
    ratios = {g: float(options[g][0][k]) for g, k in zip(names, sol.choice)}
    predicted = base + sol.cost
    grid = {"unit": sol.unit, "cells": sol.cells, "exact": sol.exact}
    plan = Plan(
        metric, target, full, ratios, widths, sol.value, predicted, measured, solves=solves, grid=grid
    )
    if fill and measured < target * (1 - tol):
        _fill(plan, options, base_widths, cost, tol)
    return plan


def _fill(plan: Plan, options, base_widths, cost, tol: float) -> None:
    """Give filters back to chosen groups (most degradation saved per unit of cost first) until
    the measured cost is within ``tol`` below the target; widths only grow, cost stays <= target."""

    def deg_at(g: str, width: int) -> float:
        rs, ds = options[g]
        ratio = 1.0 - width / base_widths[g]
        return _interp(ratio, rs, ds)

    while plan.measured < plan.target * (1 - tol):
        best = None
        for g, w in plan.widths.items():
            if w >= base_widths[g]:
                continue
            up = dict(plan.widths, **{g: w + 1})
            dc = float(cost(up)) - plan.measured
            if plan.measured + dc > plan.target:
                continue
            gain = deg_at(g, w) - deg_at(g, w + 1)
            key = (gain / dc if dc > 0 else math.inf, -list(plan.widths).index(g))
            if best is None or key > best[0]:
                best = (key, g)
        if best is None:
            return  # no single filter fits any more
        g = best[1]
        # the widest width of g that still fits (cost grows with the width)
        lo, hi = plan.widths[g] + 1, base_widths[g]
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if float(cost(dict(plan.widths, **{g: mid}))) <= plan.target:
                lo = mid
            else:
                hi = mid - 1
        old = plan.widths[g]
        plan.widths[g] = lo
        plan.filled[g] = lo
        plan.degradation += deg_at(g, lo) - deg_at(g, old)
        plan.measured = float(cost(plan.widths))


def _fmt(x: float, metric: str) -> str:
    return f"{x:.3g} ms" if metric == "latency_ms" else f"{int(round(x)):,}"


__all__ = [
    "DEFAULT_GRID_CELLS",
    "InfeasibleBudget",
    "Plan",
    "Solution",
    "TARGETS",
    "degradations",
    "grid_unit",
    "plan_widths",
    "solve_mck",
]
