"""Hardware-aware search (docs/hardware.md): a latency or energy budget on a named device, a second
objective next to accuracy, and zero-cost estimates of the device metric.

A :class:`HardwareSpec` says what the user asks for; :func:`resolve` turns it into what the C++
driver takes (a feasibility mask and a cost by universe row, ``zcfast._C.search.Search(...,
feasible=, cost=)``) from the bundled HW-NAS-Bench table (:mod:`zcfast.hardware`) or from an
estimate of it; :func:`outcome` reports, from the true table, how the run's trained and selected
cells fare against the budget. :func:`pareto_front` and :func:`hypervolume` are plain reference
implementations that :func:`zcfast.search.verify_runs` checks the driver's curves with.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from zcfast import hardware as hwdata

OBJECTIVES = ("accuracy", "latency", "energy")


def _positive(name: str, v) -> float | None:
    if v is None:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {v!r}") from None
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be a positive number, got {v!r}")
    return x


def parse_objectives(text) -> tuple:
    """``accuracy`` or ``accuracy,latency`` / ``accuracy,energy`` (a string or a sequence)."""
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text)]
    if not items or items[0] != "accuracy" or len(items) > 2 or len(set(items)) != len(items) \
            or any(t not in OBJECTIVES for t in items):
        raise ValueError(f"cannot read objectives {text!r}: expected 'accuracy' or "
                         "'accuracy,latency' or 'accuracy,energy'")
    return tuple(items)


@dataclass(frozen=True)
class HardwareSpec:
    """What a hardware-aware search asks for (docs/hardware.md).

    ``device``: one of :data:`zcfast.hardware.DEVICES`; ``max_latency`` (ms) / ``max_energy``
    (mJ): budgets (None: none); ``objectives``: ``("accuracy",)`` or with ``"latency"`` /
    ``"energy"`` (multi-objective mode); ``estimate``: None (the measured table) or an estimate
    spec (``params``, ``flops`` or ``fit`` with ``:N`` measured cells, see
    :func:`zcfast.hardware.estimate`) used for every device metric the search reads; ``margin``:
    a cell counts as within a budget B when its (estimated) value is <= margin x B;
    ``estimate_seed``: which cells are measured to fit the estimate (None: the run's seed).
    """

    device: str
    max_latency: float | None = None
    max_energy: float | None = None
    objectives: tuple = ("accuracy",)
    estimate: str | None = None
    margin: float = 1.0
    estimate_seed: int | None = None

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "device", hwdata.device_name(self.device))
        set_(self, "max_latency", _positive("max_latency", self.max_latency))
        set_(self, "max_energy", _positive("max_energy", self.max_energy))
        set_(self, "objectives", parse_objectives(self.objectives))
        m = _positive("margin", self.margin)
        if m > 1.0:
            raise ValueError(f"margin {self.margin!r} is out of range: expected (0, 1] (a cell "
                             "counts as within budget B when its value is <= margin x B)")
        set_(self, "margin", m)
        if self.estimate is not None:
            set_(self, "estimate", hwdata.parse_estimate(self.estimate).label)
        if self.estimate_seed is not None:
            s = self.estimate_seed
            if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
                raise ValueError(f"estimate_seed must be a non-negative int, got {s!r}")
            set_(self, "estimate_seed", int(s))
        for met in self.metrics:
            hwdata.check_metric(self.device, met)
        if not self.budgets and len(self.objectives) == 1:
            raise ValueError(f"a hardware-aware search on {self.device} needs a budget "
                             "(max_latency / max_energy) or a second objective")

    @property
    def budgets(self) -> dict:
        """{metric: budget} of the constraints in force."""
        out = {}
        if self.max_latency is not None:
            out["latency"] = self.max_latency
        if self.max_energy is not None:
            out["energy"] = self.max_energy
        return out

    @property
    def cost_metric(self) -> str | None:
        """The second objective (multi-objective mode), or None."""
        return self.objectives[1] if len(self.objectives) > 1 else None

    @property
    def metrics(self) -> tuple:
        """Every device metric the search reads."""
        m = list(self.budgets)
        if self.cost_metric and self.cost_metric not in m:
            m.append(self.cost_metric)
        return tuple(m)

    def settings(self) -> dict:
        """JSON-ready settings (part of a runs file's identity)."""
        d = asdict(self)
        d["objectives"] = list(self.objectives)
        return d

    @classmethod
    def of(cls, value) -> HardwareSpec | None:
        """A spec from a spec, a settings dict, or None."""
        if value is None or isinstance(value, HardwareSpec):
            return value
        if isinstance(value, dict):
            return cls(**value)
        raise ValueError(f"hardware must be a HardwareSpec or a dict of its fields, got {value!r}")


@dataclass
class Task:
    """A resolved spec, by universe row (NB201 index): what the driver gets and the truth."""

    spec: HardwareSpec
    dataset: str
    feasible: np.ndarray | None          # (n,) bool, or None without a budget
    cost: np.ndarray | None              # (n,) float64, or None with one objective
    truth: dict                          # metric -> DeviceMetric (the measured table)
    used: dict                           # metric -> (n,) float64 the search saw (table or estimate)
    measured_cells: dict = field(default_factory=dict)  # metric -> indices measured for a fit
    record: dict = field(default_factory=dict)


def resolve(spec: HardwareSpec, dataset: str, seed: int, *, proxy_tables: dict | None = None,
            n_rows: int = 15625) -> Task:
    """The driver's feasibility mask and cost for ``spec`` on ``dataset``.

    With the measured table, a cell is feasible when its measured value is <= margin x budget for
    every budget; a cell without a measurement (Edge TPU) is never feasible, and in
    multi-objective mode it is left out too (its cost is unknown). With an estimate, the search
    sees the estimate (the measured cells keep their measured values) and nothing else:
    ``proxy_tables`` maps ``params`` / ``flops`` to their tables (by NB201 index) when the
    estimate needs one. The measured cells of a fit are drawn with ``spec.estimate_seed`` (the
    run's ``seed`` when None).
    """
    from zcfast.data import dataset_name

    ds = dataset_name(dataset)
    truth = {m: hwdata.metric(spec.device, m, ds) for m in spec.metrics}
    used, measured_cells = {}, {}
    est_seed = int(seed) if spec.estimate_seed is None else spec.estimate_seed
    for m, t in truth.items():
        if t.values.size != n_rows:
            raise ValueError(f"the hardware table has {t.values.size} cells, the universe {n_rows}")
        if spec.estimate is None:
            used[m] = np.where(t.measured, t.values, np.nan)
        else:
            es = hwdata.parse_estimate(spec.estimate)
            proxy = None
            if es.kind in ("params", "flops"):
                proxy = (proxy_tables or {}).get(es.kind)
                if proxy is None:
                    raise ValueError(f"the {es.label} estimate needs the {es.kind} of every cell")
            used[m], measured_cells[m] = hwdata.estimate(es, t, est_seed, proxy=proxy)
    ok = np.ones(n_rows, dtype=bool)
    for m in spec.metrics:  # a value the search cannot read is never feasible
        ok &= np.isfinite(used[m])
    unknown = int((~ok).sum())
    for m, b in spec.budgets.items():
        ok &= np.where(np.isfinite(used[m]), used[m], np.inf) <= spec.margin * b
    cost = used[spec.cost_metric] if spec.cost_metric else None
    record = {
        "device": spec.device, "device_name": hwdata.DEVICE_NAMES[spec.device],
        "source": "HW-NAS-Bench (bundled)" if spec.estimate is None
        else f"estimate {spec.estimate} (seed {est_seed})",
        "feasible_cells": int(ok.sum()), "unknown_cells": unknown,
    }
    if spec.estimate is not None:
        record["estimate_seed"] = est_seed
        record["measured_cells"] = {m: [int(i) for i in v] for m, v in measured_cells.items()}
    if not ok.any():
        raise ValueError(f"no NB201 cell is within the budget on {spec.device} ({ds}: "
                         + ", ".join(f"{m} <= {spec.margin:g} x {b:g} {hwdata.UNITS[m]}"
                                     for m, b in spec.budgets.items())
                         + f"); the smallest {'estimated ' if spec.estimate else ''}values are "
                         + ", ".join(f"{m} {np.nanmin(used[m]):.4g} {hwdata.UNITS[m]}"
                                     for m in spec.budgets))
    return Task(spec, ds, ok if (spec.budgets or unknown) else None, cost, truth, used,
                measured_cells, record)


def outcome(task: Task, trained: np.ndarray, val: np.ndarray, test: np.ndarray | None = None) -> dict:
    """How a run's trained cells and its selected cell (best validation, the first on ties)
    fare on the *measured* table: their true metrics, and how many break a budget (only an
    estimate can; a value the table lacks is counted as unverifiable, not as a violation).
    ``val`` / ``test``: the accuracies of the trained cells, in query order; with ``test`` the
    outcome also gives ``within_test``, the test accuracy of ``best_within`` (None: no trained
    cell truly meets the budget)."""
    trained = np.asarray(trained, dtype=np.int64)
    if trained.size == 0:
        return {}
    sel = int(trained[int(np.argmax(val))])
    distinct = np.unique(trained)
    out = {"selected": sel, "selected_metrics": {}, "violations": {}, "unverifiable": {},
           "selected_violates": False}
    if task.spec.budgets:
        # what a user who measures the trained cells on the device afterwards would deploy: the
        # best-validation trained cell whose measured values meet every budget (None: no such)
        within = np.ones(trained.size, dtype=bool)
        for m, b in task.spec.budgets.items():
            t = task.truth[m]
            within &= t.measured[trained] & (np.where(t.measured, t.values, np.inf)[trained] <= b)
        at = int(np.flatnonzero(within)[int(np.argmax(val[within]))]) if within.any() else None
        out["best_within"] = None if at is None else int(trained[at])
        if test is not None:
            out["within_test"] = None if at is None else float(np.asarray(test)[at])
    for m, t in task.truth.items():
        out["selected_metrics"][m] = float(t.values[sel]) if t.measured[sel] else None
    for m, b in task.spec.budgets.items():
        t = task.truth[m]
        known = t.measured[distinct]
        out["violations"][m] = int((t.values[distinct][known] > b).sum())
        out["unverifiable"][m] = int((~known).sum())
        if t.measured[sel] and t.values[sel] > b:
            out["selected_violates"] = True
    out["trained_distinct"] = int(distinct.size)
    return out


def within_curve(task: Task, trained: np.ndarray, val: np.ndarray, test: np.ndarray) -> list:
    """Entry n-1: the test accuracy of the best-validation cell (the first on ties) among the
    first n trained cells whose *measured* values meet every budget; None while there is none.
    The honest curve of a search on an estimate (on the measured table it is ``test_curve``).
    ``val`` / ``test``: accuracies of the trained cells in query order."""
    trained = np.asarray(trained, dtype=np.int64)
    ok = np.ones(trained.size, dtype=bool)
    for m, b in task.spec.budgets.items():
        t = task.truth[m]
        ok &= t.measured[trained] & (np.where(t.measured, t.values, np.inf)[trained] <= b)
    out, best_v, best_t = [], -np.inf, None
    for i in range(trained.size):
        if ok[i] and val[i] > best_v:
            best_v, best_t = float(val[i]), float(test[i])
        out.append(best_t)
    return out


# ----------------------------------------------------------------------- reference Pareto / HV
def pareto_front(acc: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Indices of the points no other point dominates (accuracy up, cost down; a point dominates
    another when it is at least as good in both and better in one). Equal points all stay."""
    acc, cost = np.asarray(acc, float), np.asarray(cost, float)
    keep = []
    for i in range(acc.size):
        dom = (acc >= acc[i]) & (cost <= cost[i]) & ((acc > acc[i]) | (cost < cost[i]))
        if not dom.any():
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def hypervolume(a: np.ndarray, g: np.ndarray) -> float:
    """Area of the union of the boxes [0, a_i] x [0, g_i] (both objectives to maximise, reference
    point (0, 0)): a sum of vertical strips between the sorted distinct a values."""
    a, g = np.asarray(a, float), np.asarray(g, float)
    if a.size == 0:
        return 0.0
    xs = np.unique(np.concatenate([[0.0], a]))
    area = 0.0
    for lo, hi in zip(xs[:-1], xs[1:]):  # on (lo, hi] the union's height is max g over a >= hi
        area += (hi - lo) * float(g[a >= hi].max())
    return area


def normalisers(ranges: dict):
    """(acc -> a, cost -> g) of a run's recorded ``hv_ranges`` (docs/hardware.md)."""
    span_a = ranges["acc_hi"] - ranges["acc_lo"]
    span_c = ranges["cost_hi"] - ranges["cost_lo"]

    def fa(x):
        return (np.asarray(x, float) - ranges["acc_lo"]) / span_a if span_a > 0 else np.ones_like(x, float)

    def fg(x):
        return (ranges["cost_hi"] - np.asarray(x, float)) / span_c if span_c > 0 else np.ones_like(x, float)

    return fa, fg


def hv_curves(val: np.ndarray, test: np.ndarray, cost: np.ndarray, ranges: dict) -> tuple:
    """(hv_curve, hv_val_curve) of a query sequence, recomputed from scratch at every n."""
    fa, fg = normalisers(ranges)
    hv, hvv = [], []
    for n in range(1, len(val) + 1):
        f = pareto_front(val[:n], cost[:n])  # repeats of a cell do not change a union's area
        hvv.append(hypervolume(fa(val[:n][f]), fg(cost[:n][f])))
        hv.append(hypervolume(fa(test[:n][f]), fg(cost[:n][f])))
    return np.asarray(hv), np.asarray(hvv)


def verify(run: dict, val: np.ndarray, test: np.ndarray, *, estimate_scores: dict | None = None,
           cache=None) -> list:
    """Problems of a hardware-aware run (``run["hardware"]`` set) against the bundled tables:
    every trained cell within the constraint the search saw (the measured table, or the estimate
    rebuilt from its seed), the recorded budget outcome, and in multi-objective mode the front
    and both hypervolume curves recomputed by the reference implementations above.
    ``val`` / ``test``: accuracies by NB201 index. Empty list: consistent."""
    seed = run.get("seed")
    try:
        spec = HardwareSpec.of(run["hardware"])
    except (KeyError, ValueError) as e:
        return [f"seed {seed}: unreadable hardware settings ({e})"]
    tables = {}
    kind = spec.estimate.split(":")[0] if spec.estimate else None
    if kind in ("params", "flops"):
        if estimate_scores and kind in estimate_scores:
            tables[kind] = np.asarray(estimate_scores[kind], dtype=np.float64)
        else:
            from zcfast.search.cache import ScoreCache, ScoreKey
            from zcfast.spaces import nb201

            store = cache if isinstance(cache, ScoreCache) else ScoreCache(cache)
            tables[kind] = store.table(ScoreKey.of(kind, run["dataset"], 0),
                                       list(nb201.all_arch_strings()))
            if tables[kind] is None:
                return [f"seed {seed}: cannot recheck the {spec.estimate} constraint: the score "
                        f"cache lacks the {kind} of some cells (pass estimate_scores)"]
    task = resolve(spec, run["dataset"], int(seed), proxy_tables=tables)
    t = np.asarray(run.get("trained", []), dtype=np.int64)
    probs = []
    if task.feasible is not None and t.size and not task.feasible[t].all():
        bad = int(t[~task.feasible[t]][0])
        probs.append(f"seed {seed}: trained cell {bad} is outside the constraint the search saw")
    rec = run.get("hw", {})
    want = {**task.record, **outcome(task, t, val[t], test[t])}
    for k in ("feasible_cells", "selected", "violations", "unverifiable", "selected_violates",
              "best_within", "within_test"):
        if k == "within_test" and rec.get(k) is not None and want[k] is not None:
            if abs(rec[k] - want[k]) > 1e-6:
                probs.append(f"seed {seed}: hw within_test {rec[k]!r}, the tables give {want[k]!r}")
            continue
        if rec.get(k) != want.get(k):
            probs.append(f"seed {seed}: hw {k} {rec.get(k)!r}, the tables give {want.get(k)!r}")
    if spec.estimate and spec.budgets:  # a missing curve is a defect, never an old format
        got, want_c = run.get("within_curve"), within_curve(task, t, val[t], test[t])
        if got is None or len(got) != len(want_c) or any(
                (a is None) != (b is None) or (a is not None and abs(a - b) > 1e-6)
                for a, b in zip(got, want_c)):
            probs.append(f"seed {seed}: within_curve differs from the trained cells that truly "
                         "meet the budget")
    if spec.cost_metric:
        cost = task.cost[t]
        ranges = run.get("hv_ranges")
        ok = task.feasible if task.feasible is not None else np.ones(val.size, bool)
        want_r = {"acc_lo": float(min(val[ok].min(), test[ok].min())),
                  "acc_hi": float(max(val[ok].max(), test[ok].max())),
                  "cost_lo": float(task.cost[ok].min()), "cost_hi": float(task.cost[ok].max())}
        if ranges is None or any(abs(ranges[k] - v) > 1e-9 for k, v in want_r.items()):
            return probs + [f"seed {seed}: hv_ranges {ranges} != {want_r}"]
        hv, hvv = hv_curves(val[t], test[t], cost, ranges)
        for key, w in (("hv_curve", hv), ("hv_val_curve", hvv)):
            got = np.asarray(run.get(key, []), dtype=np.float64)
            if got.shape != w.shape or np.abs(got - w).max(initial=0) > 1e-6:
                probs.append(f"seed {seed}: {key} differs from the front of the trained cells")
        front = set(np.unique(t)[pareto_front(val[np.unique(t)], task.cost[np.unique(t)])].tolist())
        if set(run.get("front", [])) != front:
            probs.append(f"seed {seed}: front {sorted(run.get('front', []))} != {sorted(front)}")
    return probs


# ------------------------------------------------------------------------------- command line
def add_arguments(p) -> None:
    """The hardware-aware options of ``zcfast search`` (docs/hardware.md)."""
    g = p.add_argument_group("hardware-aware search (docs/hardware.md)")
    g.add_argument("--hw-device", default=None, metavar="DEVICE",
                   help=f"HW-NAS-Bench device: {', '.join(hwdata.DEVICES)}")
    g.add_argument("--max-latency", type=float, default=None, metavar="MS",
                   help="train only cells whose latency on --hw-device is <= MS milliseconds")
    g.add_argument("--max-energy", type=float, default=None, metavar="MJ",
                   help="train only cells whose energy on --hw-device is <= MJ millijoules")
    g.add_argument("--objectives", default="accuracy",
                   help="'accuracy' or 'accuracy,latency' / 'accuracy,energy' (multi-objective: "
                   "the Pareto front of the trained cells and its hypervolume)")
    g.add_argument("--latency-estimate", "--hw-estimate", dest="hw_estimate", default=None,
                   metavar="KIND[:N]",
                   help="search on an estimate of the device metric instead of the measured "
                   "table: params, flops (a power law fitted to N measured cells) or fit (ridge "
                   "on the one-hot cell, N measured cells); N defaults to 50")
    g.add_argument("--margin", type=float, default=1.0,
                   help="safety margin in (0, 1]: a cell counts as within budget B when its "
                   "(estimated) value is <= margin x B")
    g.add_argument("--estimate-seed", type=int, default=None,
                   help="which cells are measured to fit the estimate (default: each run's seed)")


def spec_from_args(a) -> HardwareSpec | None:
    """The HardwareSpec of parsed ``zcfast search`` arguments, or None (ValueError naming a
    hardware option given without --hw-device)."""
    if a.hw_device is None:
        given = [n for n, v in (("--max-latency", a.max_latency), ("--max-energy", a.max_energy),
                                ("--latency-estimate", a.hw_estimate),
                                ("--estimate-seed", a.estimate_seed)) if v is not None]
        if a.objectives != "accuracy":
            given.append("--objectives")
        if a.margin != 1.0:
            given.append("--margin")
        if given:
            raise ValueError(f"{', '.join(given)} need{'s' if len(given) == 1 else ''} --hw-device (one of "
                             f"{', '.join(hwdata.DEVICES)})")
        return None
    return HardwareSpec(a.hw_device, a.max_latency, a.max_energy, a.objectives, a.hw_estimate,
                        a.margin, a.estimate_seed)


def describe(spec: HardwareSpec, dataset: str) -> str:
    """One line: the device, budgets and objectives of a spec."""
    parts = [f"{hwdata.DEVICE_NAMES[spec.device]} ({dataset})"]
    for m, b in spec.budgets.items():
        parts.append(f"{m} <= {b:g} {hwdata.UNITS[m]}"
                     + (f" (searched at {spec.margin:g} x)" if spec.margin != 1.0 else ""))
    if spec.cost_metric:
        parts.append(f"objectives accuracy and {spec.cost_metric}")
    if spec.estimate:
        parts.append(f"on the estimate {spec.estimate}")
    return ", ".join(parts)


def summary_lines(runs: list) -> list:
    """Human-readable lines about the hardware side of finished runs (one variant)."""
    from zcfast.spaces import nb201

    if not runs or runs[0].get("hardware") is None:
        return []
    spec = HardwareSpec.of(runs[0]["hardware"])
    h0 = runs[0]["hw"]
    lines = [f"Hardware: {describe(spec, runs[0]['dataset'])}; {h0['feasible_cells']} of 15625 "
             "cells may be trained"
             + (f" ({h0['unknown_cells']} without a value left out)" if h0["unknown_cells"] else "")]
    for m, b in spec.budgets.items():  # where the budget sits among the device's measured cells
        t = hwdata.metric(spec.device, m, runs[0]["dataset"])
        v = t.values[t.measured]
        lines.append(f"  {m} budget {b:g} {hwdata.UNITS[m]}: {100.0 * np.mean(v <= b):.1f}% of the "
                     f"{v.size} measured cells meet it (they span {v.min():.4g} to {v.max():.4g} "
                     f"{hwdata.UNITS[m]}; 10th / 50th percentile {t.percentile(10):.4g} / "
                     f"{t.percentile(50):.4g})")
    for r in runs[:5]:
        h = r["hw"]
        if "selected" not in h:
            continue
        i = int(h["selected"])
        k = r["trained"].index(i)
        mets = ", ".join(f"{m} {v:.4g} {hwdata.UNITS[m]}" if v is not None else f"{m} unmeasured"
                         for m, v in h["selected_metrics"].items())
        lines.append(f"  seed {r['seed']}: selected NB201 {i} {nb201.arch_at(i)}: val "
                     f"{r['best_val_curve'][-1]:.2f}%, test {r['test_curve'][-1]:.2f}%, {mets}"
                     f" (first trained at query {k + 1})")
    if spec.estimate and spec.budgets:
        viol = sum(sum(r["hw"]["violations"].values()) for r in runs)
        dist = sum(r["hw"]["trained_distinct"] for r in runs)
        sel = sum(bool(r["hw"]["selected_violates"]) for r in runs)
        lines.append(f"  true budget broken by {viol} of {dist} distinct trained cells and by the "
                     f"selected cell in {sel} of {len(runs)} runs (measured table)")
        # what a user deploys after measuring the trained cells: the best-validation trained
        # cell that truly meets every budget (docs/hardware.md, "Margin")
        deploy = [(r, int(r["hw"]["best_within"]), r["hw"].get("within_test")) for r in runs
                  if r["hw"].get("best_within") is not None]
        acc = [a for _, _, a in deploy if a is not None]
        lines.append(f"  truly within budget (best validation among the trained cells that meet "
                     f"it on the measured table): {len(deploy)} of {len(runs)} runs have one"
                     + (f", mean test accuracy {np.mean(acc):.2f}%" if acc else ""))
        for r, w, a in deploy[:5]:
            lines.append(f"  seed {r['seed']}: deploy NB201 {w} {nb201.arch_at(w)}"
                         + (f": test {a:.2f}%" if a is not None else ""))
    if spec.cost_metric:
        hv = np.mean([r["hv_curve"][-1] for r in runs])
        lines.append(f"  hypervolume (test accuracy of the validation front) after "
                     f"{runs[0]['budget']} trained models: mean {hv:.4f} over {len(runs)} runs; "
                     f"front of seed {runs[0]['seed']}: {len(runs[0]['front'])} cells")
    return lines


def within_table(runs: list, at) -> str:
    """Markdown row per k in ``at``: mean test accuracy of the best-validation trained cell that
    truly meets the budget after k trained models, over the runs that have one (count given)."""
    cells = []
    for k in at:
        v = [r["within_curve"][k - 1] for r in runs if r.get("within_curve")
             and len(r["within_curve"]) >= k and r["within_curve"][k - 1] is not None]
        cells.append(f"{np.mean(v):.2f} ({len(v)} of {len(runs)} runs)" if v else
                     f"none yet (0 of {len(runs)} runs)")
    return "\n".join(["| truly within budget | " + " | ".join(f"@{k}" for k in at) + " |",
                      "|" + "---|" * (len(at) + 1), "| mean test accuracy | " + " | ".join(cells)
                      + " |"])


def plot_front(runs: list, path, title: str = "") -> None:
    """Left: every trained cell of the first run and its validation front (test accuracy of the
    front's members, against the cost); right: the mean hypervolume curves over all runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zcfast.search.driver import universe

    r = runs[0]
    spec = HardwareSpec.of(r["hardware"])
    uni = universe(r["dataset"])
    t = np.unique(np.asarray(r["trained"], dtype=np.int64))
    truth = hwdata.metric(spec.device, spec.cost_metric, r["dataset"])
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(12, 4.4))
    a0.scatter(truth.values[t], np.asarray(uni.test)[t], s=9, c="0.6", label="trained cells (test)")
    fp = np.asarray([[p[3], p[2], p[1]] for p in r["front_points"]])
    a0.plot(fp[:, 0], fp[:, 1], "o-", c="C3", ms=4, label="validation front: test accuracy")
    a0.plot(fp[:, 0], fp[:, 2], "s--", c="C0", ms=3, lw=1, label="validation front: validation")
    a0.set_xlabel(f"{spec.device} {spec.cost_metric} ({hwdata.UNITS[spec.cost_metric]})"
                  + (f", estimate {spec.estimate}" if spec.estimate else ""))
    a0.set_ylabel("accuracy (%)")
    a0.set_title(f"seed {r['seed']}: {len(t)} trained cells")
    a0.legend(fontsize=8, loc="lower right")
    a0.grid(alpha=0.3)
    for key, lab in (("hv_curve", "test accuracy"), ("hv_val_curve", "validation accuracy")):
        m = np.asarray([x[key] for x in runs], dtype=float)
        x = np.arange(1, m.shape[1] + 1)
        (line,) = a1.plot(x, m.mean(0), label=f"{lab} (n={m.shape[0]})")
        a1.fill_between(x, np.quantile(m, 0.25, 0), np.quantile(m, 0.75, 0),
                        color=line.get_color(), alpha=0.15, lw=0)
    a1.set_xscale("log")
    a1.set_xlabel("trained models")
    a1.set_ylabel("normalised hypervolume of the validation front")
    a1.grid(alpha=0.3, which="both")
    a1.legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
