"""Comparing runs over seeds: which differences are findings and which are noise.

A run's final accuracy moves with its seed (initialisation, data order), and on a small test set
one image is a visible step (digits: 360 test images, so one image is 0.28 points). This module
groups finished runs that differ only in their seed, summarises each metric over the seeds, and
says in words whether two groups differ beyond that noise. The CLI's ``sweep`` report and the
pages read these functions, so every view uses the same rule.

Definitions (one place for all views):

- **Spread** of a metric over a group's seeds: the sample standard deviation (``n - 1`` in the
  denominator; 0 for one seed) together with the minimum and maximum. No 95 % interval is given:
  with the usual 3 seeds a t-interval is ±2.5 std wide and says little more than min/max.
- **Error half-width** of a group's metric (``error``): its std; for test accuracy at least half a
  test example (one example = ``1 / test_examples``), so two accuracies whose mean ± error bars
  do not overlap always differ by more than one test example; for latency at least the mean of
  the runs' own ``p90 - median`` (the spread of one measurement, see ``latency_error``).
- **Verdict** between two groups on a metric, checked in this order:
  1. ``|Δmean| < one test example`` (accuracy metrics only) → ``SMALLER_THAN_ONE_EXAMPLE``;
  2. either group has a single seed → ``NO_SPREAD`` (the noise is not measured);
  3. ``|Δmean| > std_a + std_b`` (the mean ± std bars do not overlap) → ``EXCEEDS_SPREAD``;
  4. otherwise → ``WITHIN_SPREAD``.
  This is a plain non-overlap rule, not a significance test: with 3 seeds per group and equal
  spreads it corresponds to a two-sample t of about 2.4 (two-sided p ≈ 0.07), so "exceeds" means
  "stands out from the seed noise", not "proven".
- **Latency**: a run records the median and the 90th percentile of its timed repeats. Only the
  upper tail is recorded, so a figure's half-width is taken as ``p90 - median`` on both sides; two
  figures differ beyond their measured spread when ``|Δmedian|`` exceeds the sum of the
  half-widths (``latency_differs``). Between groups (``compare(a, b, "latency_ms")``) the
  half-width is ``Group.error``: the larger of the seeds' std and the mean ``p90 - median``,
  so single runs get a verdict too (exceeds / within the spread). Load on the machine between runs is not inside that spread;
  repeat seeds to see it.
- **Noise-aware Pareto front** (``noise_aware_front``): a staircase in which every step trades a
  loss on the x axis for a gain on the y axis that both exceed the points' errors; points that
  are better only within the noise do not bend the front.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from pruning.store import Run

EXCEEDS_SPREAD = "difference exceeds the seed spread"
WITHIN_SPREAD = "within the seed spread"
SMALLER_THAN_ONE_EXAMPLE = "smaller than one test example"
NO_SPREAD = "spread not measured (one seed)"
VERDICTS = (EXCEEDS_SPREAD, WITHIN_SPREAD, SMALLER_THAN_ONE_EXAMPLE, NO_SPREAD)
#: the verdict rule in one sentence, for reports
RULE = ("spread = sample std over seeds; |Δmean| < one test example: smaller than one test "
        "example; one seed in either group: spread not measured; |Δmean| > std_a + std_b "
        "(mean ± std bars apart): exceeds the seed spread; else within the seed spread")

#: summary keys summarised by default (name -> shown label with unit)
METRICS: Mapping[str, str] = MappingProxyType({
    "test_acc": "test accuracy", "test_loss": "test loss", "mask_sparsity": "mask sparsity",
    "effective_sparsity": "effective sparsity", "params_nonzero": "non-zero parameters",
    "flops": "FLOPs (masked)", "latency_ms": "latency (ms)"})
#: metrics that count test examples right, so the one-example rule applies to them
ACCURACY_METRICS = ("test_acc",)
#: The schedule comparison's defaults, chosen by measurement (README, "Differences you can
#: trust"): at 98 % sparsity the small CNN on digits separates the schedules by more than their
#: seed spread (at 90 % all four lie within three test images of each other; at 99 % the
#: seeds scatter by up to 23 points). Three seeds per schedule. Read-only views: no module-level
#: state a caller could change for every session of the app.
SCHEDULE_COMPARISON: Mapping[str, Any] = MappingProxyType({
    "schedule": ("one_shot", "iterative", "agp", "one_cycle"), "seed": (0, 1, 2),
    "sparsity": 0.98})
#: The trade-off sweep's defaults, chosen by measurement (README, "Differences you can trust"):
#: the dense baseline (0), then sparsities up to 0.995, where the small CNN on digits falls from
#: 97 % (0.95) through 91 % (0.98) and 45 % (0.99) to chance (10 %, 0.995). Three seeds each.
TRADEOFF_SWEEP: Mapping[str, Any] = MappingProxyType({
    "sparsity": (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995), "seed": (0, 1, 2)})
#: config fields that do not change what a run learns, ignored (with the seed) when grouping
NOT_GROUPED = ("seed", "threads", "snapshots", "device")


@dataclass(frozen=True)
class Spread:
    """One metric over a group's seeds: ``values`` in seed order and their summary."""
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation (n - 1); 0 for one value."""
        return statistics.stdev(self.values) if self.n > 1 else 0.0

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean, "std": self.std, "min": self.low,
                "max": self.high, "values": list(self.values)}


@dataclass(frozen=True)
class Group:
    """Finished runs identical in everything but the seed (and ``NOT_GROUPED``)."""
    key: tuple[tuple[str, Any], ...]  # (field, value) of the grouped config, in field order
    run_ids: tuple[str, ...]
    seeds: tuple[int, ...]
    metrics: Mapping[str, Spread]  # only the metrics every run of the group reported
    test_examples: int | None  # size of the test set the accuracies count over
    latency_half_width_ms: float | None  # mean of the runs' p90 - median, when measured

    @property
    def n(self) -> int:
        return len(self.run_ids)

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.key)

    def label(self, fields: Sequence[str]) -> str:
        """``field=value`` of the given fields (use ``varying_fields``), e.g. ``schedule=agp``."""
        config = self.config
        return ", ".join(f"{f}={_short(config.get(f))}" for f in fields) or "all runs"

    def resolution(self, metric: str) -> float | None:
        """One test example as a fraction, for accuracy metrics; else None."""
        if metric in ACCURACY_METRICS and self.test_examples:
            return 1.0 / self.test_examples
        return None

    def error(self, metric: str) -> float | None:
        """Half-width of the group's error bar on ``metric`` (see the module docstring)."""
        spread = self.metrics.get(metric)
        if spread is None:
            return None
        error = spread.std
        resolution = self.resolution(metric)
        if resolution is not None:
            error = max(error, resolution / 2)
        if metric == "latency_ms" and self.latency_half_width_ms is not None:
            error = max(error, self.latency_half_width_ms)
        return error


@dataclass(frozen=True)
class Difference:
    """Group ``a`` against group ``b`` on one metric: ``delta = mean_a - mean_b``."""
    a: Group
    b: Group
    metric: str
    delta: float
    verdict: str

    @property
    def exceeds_spread(self) -> bool:
        return self.verdict == EXCEEDS_SPREAD


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def test_examples_of(run: Run) -> int | None:
    """Size of the test set ``run`` was scored on: its summary's ``test_examples``, else the
    dataset's declared ``test_examples`` (runs stored before the summary recorded it)."""
    recorded = run.summary.get("test_examples")
    if recorded:
        return int(recorded)
    from pruning.data import DATASETS

    try:
        return getattr(DATASETS.get(run.config.dataset), "test_examples", None)
    except KeyError:  # a dataset this version no longer has
        return None


def group_key(run: Run) -> tuple[tuple[str, Any], ...]:
    """The run's config without the seed and the fields that do not change what it learns;
    dict values become sorted tuples so the key is hashable."""
    out = []
    # the fields read directly: to_dict deep-copies every value, which on a page grouping
    # 1,000 runs was a tenth of its time
    for field in dataclasses.fields(run.config):
        if field.name in NOT_GROUPED or field.name == "unknown":
            continue
        value = getattr(run.config, field.name)
        if isinstance(value, dict):
            value = tuple(sorted(value.items()))
        out.append((field.name, value))
    return tuple(out)


def latency_error(summary: Mapping[str, Any]) -> float | None:
    """Half-width of one run's latency figure: ``p90 - median`` (ms), or None if not measured."""
    median, p90 = summary.get("latency_ms"), summary.get("latency_p90_ms")
    if median is None or p90 is None:
        return None
    return max(float(p90) - float(median), 0.0)


def group_runs(runs: Iterable[Run], metrics: Iterable[str] = METRICS) -> list[Group]:
    """Finished (``done``) runs grouped by everything but the seed, in the order each group's
    first run appears; each metric summarised over the runs that report it as a number (a
    metric is left out of a group when any of its runs lacks it, so n is the same for all)."""
    metrics = list(metrics)
    members: dict[tuple, list[Run]] = {}
    for run in runs:
        if run.status == "done":
            members.setdefault(group_key(run), []).append(run)
    groups = []
    for key, group in members.items():
        group.sort(key=lambda r: r.config.seed)
        spreads = {}
        for metric in metrics:
            values = [r.summary.get(metric) for r in group]
            if all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                spreads[metric] = Spread(tuple(float(v) for v in values))
        errors = [latency_error(r.summary) for r in group]
        sizes = {test_examples_of(r) for r in group}
        groups.append(Group(
            key=key, run_ids=tuple(r.id for r in group), seeds=tuple(r.config.seed for r in group),
            metrics=spreads, test_examples=sizes.pop() if len(sizes) == 1 else None,
            latency_half_width_ms=(statistics.fmean(errors) if errors and None not in errors
                                   else None)))
    return groups


def varying_fields(groups: Sequence[Group]) -> list[str]:
    """The config fields whose value differs between the groups (what a label should name)."""
    if not groups:
        return []
    configs = [g.config for g in groups]
    fields = list(configs[0])
    return [f for f in fields if len({repr(c.get(f)) for c in configs}) > 1]


def verdict(a: Spread, b: Spread, resolution: float | None = None) -> str:
    """The verdict on ``a`` against ``b`` (rule in the module docstring); ``resolution`` is one
    test example as a fraction for accuracy metrics, None for others."""
    delta = abs(a.mean - b.mean)
    if resolution is not None and delta < resolution:
        return SMALLER_THAN_ONE_EXAMPLE
    if a.n < 2 or b.n < 2:
        return NO_SPREAD
    if delta > a.std + b.std:
        return EXCEEDS_SPREAD
    return WITHIN_SPREAD


def compare(a: Group, b: Group, metric: str = "test_acc") -> Difference | None:
    """``a`` against ``b`` on ``metric``; None when either group lacks it."""
    if metric not in a.metrics or metric not in b.metrics:
        return None
    resolution = a.resolution(metric) if a.test_examples == b.test_examples else None
    sa, sb = a.metrics[metric], b.metrics[metric]
    if metric == "latency_ms" and None not in (a.latency_half_width_ms, b.latency_half_width_ms):
        # each run measured its own timing spread, so even single runs get a verdict
        apart = clearly_apart(sa.mean, a.error(metric), sb.mean, b.error(metric))
        return Difference(a, b, metric, sa.mean - sb.mean,
                          EXCEEDS_SPREAD if apart else WITHIN_SPREAD)
    return Difference(a, b, metric, sa.mean - sb.mean, verdict(sa, sb, resolution))


def pairwise(groups: Sequence[Group], metric: str = "test_acc") -> list[Difference]:
    """Pairs of groups that differ in exactly one config field (e.g. only the schedule), better
    mean first. Comparing groups that differ in several settings at once would not say which
    setting made the difference; along a numeric setting (sparsity, epochs) only neighbouring
    values are paired (0.95 with 0.98, not 0.5 with 0.98), which is where a curve bends."""
    out = []
    for i, a in enumerate(groups):
        for b in groups[i + 1:]:
            differing = [n for n, (x, y) in enumerate(zip(a.key, b.key)) if x != y]
            if len(differing) != 1 or _skips_a_value(a, b, differing[0], groups):
                continue
            diff = compare(a, b, metric)
            if diff is not None:
                out.append(diff if diff.delta >= 0 else compare(b, a, metric))
    return out


def _skips_a_value(a: Group, b: Group, position: int, groups: Sequence[Group]) -> bool:
    """True when ``a`` and ``b`` differ in one numeric field and another group, equal to both
    elsewhere, lies strictly between them on it."""
    low, high = a.key[position][1], b.key[position][1]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        return False
    low, high = min(low, high), max(low, high)
    rest = a.key[:position] + a.key[position + 1:]
    return any(g.key[:position] + g.key[position + 1:] == rest
               and low < g.key[position][1] < high for g in groups)


def latency_differs(median_a: float, p90_a: float, median_b: float, p90_b: float) -> bool:
    """True when two latency figures (ms) differ beyond their measured spread:
    ``|median_a - median_b| > (p90_a - median_a) + (p90_b - median_b)``."""
    return abs(median_a - median_b) > max(p90_a - median_a, 0.0) + max(p90_b - median_b, 0.0)


def clearly_apart(a: float, error_a: float, b: float, error_b: float) -> bool:
    """True when the bars ``a ± error_a`` and ``b ± error_b`` do not overlap."""
    return abs(a - b) > error_a + error_b


def noise_aware_front(frame: pd.DataFrame, x: str, y: str, *, x_error: str | None,
                      y_error: str | None, x_higher_better: bool) -> pd.DataFrame:
    """The rows of a Pareto front whose every step exceeds the noise (higher ``y`` is better;
    ``x`` as told), sorted by ``x``. ``x_error``/``y_error`` name columns of half-widths (missing
    or None = 0, the ordinary front).

    Walking from the best x to the worst, a row joins the front only when its y is clearly
    better (bars apart) than the last front row's; if its x is not clearly worse than that row's,
    it replaces it (it dominates it beyond the noise), else it becomes the next step. So
    consecutive front rows differ clearly on both axes, and a cluster of rows that differ only
    within their noise contributes one row (its clearly best), not a zigzag.
    """
    frame = frame.dropna(subset=[x, y])
    if frame.empty:
        return frame

    def errors(column: str | None) -> pd.Series:
        if column is None or column not in frame:
            return pd.Series(0.0, index=frame.index)
        return frame[column].fillna(0.0).astype(float)

    ex, ey = errors(x_error), errors(y_error)
    ordered = frame.sort_values([x, y], ascending=[not x_higher_better, False])
    front: list[Any] = []
    for idx in ordered.index:
        if front and not clearly_apart(frame.at[idx, y], ey[idx], frame.at[front[-1], y],
                                       ey[front[-1]]):
            continue  # not clearly better than a row that is at least as good on x
        if front and frame.at[idx, y] < frame.at[front[-1], y]:
            continue  # clearly worse on y and no better on x
        while front and clearly_apart(frame.at[idx, y], ey[idx], frame.at[front[-1], y],
                                      ey[front[-1]]) \
                and not clearly_apart(frame.at[idx, x], ex[idx], frame.at[front[-1], x],
                                      ex[front[-1]]):
            front.pop()  # same x within the noise and clearly better y: it dominates
        front.append(idx)
    return frame.loc[front].sort_values(x)


def groups_frame(groups: Sequence[Group], metrics: Iterable[str] = METRICS) -> pd.DataFrame:
    """One row per group for tables and charts: ``label`` (the varying fields), the varying
    fields themselves, ``n``, ``seeds``, ``run_ids``, and per metric ``<m>_mean``, ``<m>_std``,
    ``<m>_min``, ``<m>_max``, ``<m>_error`` (the half-width to draw; see ``Group.error``)."""
    fields = varying_fields(groups)
    rows = []
    for g in groups:
        row: dict[str, Any] = {"label": g.label(fields), **{f: g.config.get(f) for f in fields},
                               "n": g.n, "seeds": list(g.seeds), "run_ids": list(g.run_ids)}
        for m in metrics:
            s = g.metrics.get(m)
            row.update({f"{m}_mean": s.mean if s else None, f"{m}_std": s.std if s else None,
                        f"{m}_min": s.low if s else None, f"{m}_max": s.high if s else None,
                        f"{m}_error": g.error(m)})
        rows.append(row)
    return pd.DataFrame(rows)


def report(runs: Iterable[Run], metric: str = "test_acc") -> dict[str, Any]:
    """JSON-ready comparison: ``groups`` (label, the varying ``fields``, n, seeds, run ids,
    ``test_examples`` and every metric's spread) and ``differences`` (pairs differing in one
    field: better, worse, metric, delta, verdict, exceeds_spread) plus the ``rule``."""
    groups = group_runs(runs)
    fields = varying_fields(groups)
    return {
        "metric": metric, "rule": RULE,
        "groups": [{"label": g.label(fields), "fields": {f: g.config.get(f) for f in fields},
                    "n": g.n, "seeds": list(g.seeds), "run_ids": list(g.run_ids),
                    "test_examples": g.test_examples,
                    "metrics": {m: s.to_dict() for m, s in g.metrics.items()}}
                   for g in groups],
        "differences": [{"better": d.a.label(fields), "worse": d.b.label(fields),
                         "metric": d.metric, "delta": d.delta, "verdict": d.verdict,
                         "exceeds_spread": d.exceeds_spread}
                        for d in pairwise(groups, metric)],
    }


def report_text(runs: Iterable[Run], metric: str = "test_acc") -> str:
    """The same comparison as a table and one line per pair, for terminals."""
    groups = group_runs(runs)
    fields = varying_fields(groups)
    width = max([len(g.label(fields)) for g in groups] + [5])
    percent = metric in ACCURACY_METRICS or metric.endswith("sparsity")
    fmt = (lambda v: f"{v:.2%}") if percent else (lambda v: f"{v:.4g}")
    lines = [f"{'group':<{width}}  seeds  {METRICS.get(metric, metric)}: mean ± std  (min – max)"]
    for g in groups:
        s = g.metrics.get(metric)
        shown = f"{fmt(s.mean)} ± {fmt(s.std)}  ({fmt(s.low)} – {fmt(s.high)})" if s else "—"
        lines.append(f"{g.label(fields):<{width}}  {g.n:>5}  {shown}")
    examples = {g.test_examples for g in groups if g.test_examples}
    if metric in ACCURACY_METRICS and len(examples) == 1:
        n = examples.pop()
        lines.append(f"(one test example = {1 / n:.2%}: the test set has {n} images)")
    diffs = pairwise(groups, metric)
    if diffs:
        lines.append("")
    for d in diffs:
        delta = f"+{d.delta * 100:.2f} points" if percent else f"+{d.delta:.4g}"
        lines.append(f"{d.a.label(fields)} vs {d.b.label(fields)}: {delta} — {d.verdict}")
    return "\n".join(lines)
