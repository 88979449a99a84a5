"""Hardware cost of NAS-Bench-201 cells: HW-NAS-Bench's latency and energy on six devices.

HW-NAS-Bench (Li et al., "HW-NAS-Bench: Hardware-Aware Neural Architecture Search Benchmark",
ICLR 2021) measured or estimated, for every one of the 15,625 NB201 cells and each of the three
datasets (CIFAR-10, CIFAR-100, ImageNet16-120: different input sizes and classifier heads), the
latency of one inference on six devices and the energy on three of them. zcfast bundles a copy
(``zcfast/data/_bundled/nb201_hwnasbench.npz``, provenance and licence in its README; rebuilt by
``scripts/bundle_hw.py``); docs/hardware.md describes the data and every rule below.

>>> from zcfast import hardware as hw
>>> hw.lookup("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|"
...           "nor_conv_3x3~1|nor_conv_3x3~2|", "pixel3", "latency", "cifar10")  # ms
>>> lat = hw.metric("pixel3", "latency", "cifar10")   # every cell, by NB201 index
>>> lat.percentile(10), lat.within(5.0).sum()

**Missing values.** The Edge TPU has no latency for 4,699 cells (the source writes -1 for them;
the same cells for all three datasets). zcfast never hands such a value out as a number:
:func:`lookup` and :meth:`DeviceMetric.at` raise :class:`MissingMeasurement` naming the cell,
:meth:`DeviceMetric.within` counts an unmeasured cell as *not* within a budget (nothing certifies
it), statistics are taken over the measured cells and say how many there are, and
:func:`table` uses pandas' missing value ``<NA>`` (which refuses to act as a number in a
comparison), never NaN or -1.

**Zero-cost estimates** (for a user without a measured table): :func:`estimate` predicts a
metric for every cell from ``n`` measured cells, either by a power law in the cells' parameter
count or FLOPs (the zero-cost ``params`` / ``flops`` proxies; least squares in log-log) or by
ridge regression on the one-hot cell encoding (``fit``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

from zcfast.data import BUNDLED, dataset_name

#: devices in HW-NAS-Bench's order: NVIDIA edge GPU (Jetson TX2), Raspberry Pi 4, Google Edge TPU
#: dev board, Google Pixel 3, the Eyeriss ASIC and an FPGA (Li et al. 2021, section 3)
DEVICES = ("edgegpu", "raspi4", "edgetpu", "pixel3", "eyeriss", "fpga")
DEVICE_NAMES = {
    "edgegpu": "edge GPU (NVIDIA Jetson TX2)", "raspi4": "Raspberry Pi 4",
    "edgetpu": "Edge TPU (Google dev board)", "pixel3": "Google Pixel 3",
    "eyeriss": "Eyeriss ASIC", "fpga": "FPGA",
}
METRICS = ("latency", "energy")
UNITS = {"latency": "ms", "energy": "mJ"}
# device -> metrics it has; eyeriss_arithmetic_intensity (also in the bundle) is not a cost
AVAILABLE = {"edgegpu": ("latency", "energy"), "raspi4": ("latency",), "edgetpu": ("latency",),
             "pixel3": ("latency",), "eyeriss": ("latency", "energy"),
             "fpga": ("latency", "energy")}
ESTIMATORS = ("params", "flops", "fit")
FIT_RIDGE = 1.0  # ridge penalty of the ``fit`` estimator (one-hot features, intercept unpenalised)
_ALIASES = {"edge_gpu": "edgegpu", "jetson": "edgegpu", "tx2": "edgegpu", "raspi": "raspi4",
            "rpi4": "raspi4", "raspberrypi4": "raspi4", "edge_tpu": "edgetpu", "tpu": "edgetpu",
            "pixel": "pixel3", "asic": "eyeriss"}


# NASLib's NB201 op ids (naslib/search_spaces/nasbench201/conversions.py): 0 skip_connect, 1 none,
# 2 nor_conv_3x3, 3 nor_conv_1x1, 4 avg_pool_3x3. Its tuple lists the edges (1,2), (1,3), (1,4),
# (2,3), (2,4), (3,4) (nodes numbered from 1); NB201's arch string lists them by target node,
# |t0~0|+|t1~0|t3~1|+|t2~0|t4~1|t5~2|.
NASLIB_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
_NASLIB_TO_STRING_ORDER = (0, 1, 3, 2, 4, 5)


def naslib_tuple_to_arch(t) -> str:
    """The NB201 arch string of a NASLib op-index tuple (the key of NASLib's and GRAF's files,
    e.g. the CSV export HW-NAS-Bench was bundled from)."""
    t = tuple(int(x) for x in t)
    if len(t) != 6 or not all(0 <= o < 5 for o in t):
        raise ValueError(f"{t!r} is not a NASLib NB201 tuple (6 op ids in 0..4)")
    o = [NASLIB_OPS[t[i]] for i in _NASLIB_TO_STRING_ORDER]
    return f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|"


class MissingMeasurement(LookupError):
    """The benchmark has no value of this metric for this cell (e.g. the Edge TPU's 4,699)."""


@functools.cache
def _bundle() -> dict:
    with np.load(BUNDLED / "nb201_hwnasbench.npz", allow_pickle=False) as d:
        return {k: d[k] for k in d.files}


def device_name(device: str) -> str:
    """Canonical device name (one of :data:`DEVICES`) of an alias; ValueError naming it."""
    if isinstance(device, str):
        d = device.strip().lower().replace("-", "_")
        d = _ALIASES.get(d, d).replace("_", "")
        if d in DEVICES:
            return d
    raise ValueError(f"unknown hardware device {device!r}: expected one of {', '.join(DEVICES)}")


def check_metric(device: str, metric: str) -> tuple:
    """(device, metric) canonical; ValueError when the device has no such metric."""
    dev = device_name(device)
    if metric not in METRICS:
        raise ValueError(f"unknown hardware metric {metric!r}: expected latency or energy")
    if metric not in AVAILABLE[dev]:
        have = [f"{d}" for d in DEVICES if metric in AVAILABLE[d]]
        raise ValueError(f"HW-NAS-Bench has no {metric} for {dev} ({DEVICE_NAMES[dev]}); "
                         f"{metric} exists for {', '.join(have)}")
    return dev, metric


@dataclass(frozen=True)
class DeviceMetric:
    """One metric of one device on one dataset, for every NB201 cell (row i = NB201 index i).

    ``values``: (15625,) float64 in ``unit``; NaN where ``measured`` is False. Use the methods,
    which never treat a missing value as a number.
    """

    device: str
    metric: str
    dataset: str
    unit: str
    values: np.ndarray
    measured: np.ndarray

    @property
    def missing(self) -> int:
        """Number of cells without a value."""
        return int((~self.measured).sum())

    @property
    def label(self) -> str:
        return f"{self.device} {self.metric} ({self.unit}, {self.dataset})"

    def at(self, archs) -> np.ndarray:
        """Values of the cells ``archs`` (NB201 indices, arch strings or op tuples); raises
        MissingMeasurement naming the first cell without one."""
        from zcfast.spaces import nb201

        idx = nb201.resolve(archs)
        bad = idx[~self.measured[idx]]
        if bad.size:
            raise MissingMeasurement(
                f"HW-NAS-Bench has no {self.label} for NB201 cell {int(bad[0])} "
                f"({nb201.arch_at(int(bad[0]))})"
                + (f" and {bad.size - 1} more of the {idx.size} asked for" if bad.size > 1 else ""))
        return self.values[idx].copy()

    def within(self, budget: float) -> np.ndarray:
        """(15625,) bool: cells with a measured value <= ``budget`` (unmeasured cells: False)."""
        b = _budget(budget, self.label)
        return self.measured & (np.where(self.measured, self.values, np.inf) <= b)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (numpy's linear rule) over the measured cells only."""
        if not 0 <= q <= 100:
            raise ValueError(f"percentile {q!r} is outside [0, 100]")
        return float(np.percentile(self.values[self.measured], q))

    def range(self) -> tuple:
        """(min, max) over the measured cells."""
        v = self.values[self.measured]
        return float(v.min()), float(v.max())


def _budget(b, what: str) -> float:
    try:
        v = float(b)
    except (TypeError, ValueError):
        raise ValueError(f"budget on {what} must be a number, got {b!r}") from None
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"budget on {what} must be a positive number, got {b!r}")
    return v


@functools.cache
def metric(device: str, metric: str = "latency", dataset: str = "cifar10") -> DeviceMetric:
    """Every NB201 cell's ``metric`` (latency ms | energy mJ) on ``device`` for ``dataset``."""
    dev, met = check_metric(device, metric)
    ds = dataset_name(dataset)
    b = _bundle()
    k = list(b["datasets"]).index(ds)
    j = list(b["columns"]).index(f"{dev}_{met}")
    v = b["values"][k, :, j].copy()
    v.setflags(write=False)
    m = ~np.isnan(v)
    m.setflags(write=False)
    return DeviceMetric(dev, met, ds, UNITS[met], v, m)


def lookup(arch, device: str, metric_name: str = "latency", dataset: str = "cifar10") -> float:
    """One cell's ``metric_name`` on ``device`` (ms or mJ); ``arch`` an NB201 index, arch string
    or 6 op ids. Raises MissingMeasurement when the benchmark has no value for it."""
    return float(metric(device, metric_name, dataset).at([arch])[0])


def table(dataset: str = "cifar10"):
    """pandas DataFrame of every metric (columns ``<device>_<metric>``, plus
    ``eyeriss_arithmetic_intensity``), indexed by NB201 index, with an ``arch`` column. Missing
    values are pandas' ``<NA>`` (nullable Float64), never -1 or NaN."""
    import pandas as pd

    from zcfast.spaces import nb201

    ds = dataset_name(dataset)
    b = _bundle()
    k = list(b["datasets"]).index(ds)
    data = {"arch": list(nb201.all_arch_strings())}
    for j, c in enumerate(b["columns"]):
        data[str(c)] = pd.array(b["values"][k, :, j], dtype="Float64")  # NaN -> <NA>
    df = pd.DataFrame(data)
    df.index.name = "index"
    return df


# ------------------------------------------------------------------------------- estimates
@dataclass(frozen=True)
class EstimateSpec:
    """``kind`` params | flops | fit, fitted on ``cells`` measured cells."""

    kind: str
    cells: int

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.cells}"


def parse_estimate(spec: str, default_cells: int = 50) -> EstimateSpec:
    """``params``, ``flops``, ``fit`` or any of them with ``:N`` measured cells (``fit:50``)."""
    m = re.fullmatch(r"\s*([a-z]+)\s*(?::\s*(\d+))?\s*", str(spec).lower())
    if not m or m.group(1) not in ESTIMATORS:
        raise ValueError(f"cannot read hardware estimate {spec!r}: expected params, flops or fit, "
                         "optionally with ':N' measured cells (e.g. fit:50)")
    n = int(m.group(2)) if m.group(2) else int(default_cells)
    if n < 2:
        raise ValueError(f"hardware estimate {spec!r}: needs at least 2 measured cells, got {n}")
    return EstimateSpec(m.group(1), n)


def onehot_features() -> np.ndarray:
    """(15625, 30) float64: the one-hot NB201 cell (6 edges x 5 ops), by NB201 index."""
    from zcfast.data import nb201_ops_table

    ops = nb201_ops_table().astype(np.int64)
    x = np.zeros((ops.shape[0], 30))
    x[np.arange(ops.shape[0])[:, None], np.arange(6) * 5 + ops] = 1.0
    return x


def measured_sample(truth: DeviceMetric, n: int, seed: int) -> np.ndarray:
    """``n`` distinct NB201 indices drawn uniformly from the cells ``truth`` has a value for (the
    cells a user would measure on the device), sorted."""
    pool = np.flatnonzero(truth.measured)
    if not 2 <= n <= pool.size:
        raise ValueError(f"cannot measure {n} cells: expected 2 to {pool.size} ({truth.label})")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x4857]))
    return np.sort(rng.choice(pool, size=n, replace=False))


def estimate(spec: EstimateSpec | str, truth: DeviceMetric, seed: int = 0, *,
             proxy: np.ndarray | None = None) -> tuple:
    """Predict ``truth``'s metric for every cell from ``spec.cells`` measured cells.

    The measured cells are :func:`measured_sample` (``seed``); they keep their measured value.
    ``params`` / ``flops``: the power law value = c x^k, log c and k by least squares on
    (log x, log value) of the measured cells, x the proxy (``proxy``: (15625,) positive, by NB201
    index, the zero-cost ``params`` or ``flops`` score; a power law keeps its ranking and, unlike
    a straight line, does not let the slowest cells set the intercept of the fastest);
    ``fit``: ridge regression (penalty :data:`FIT_RIDGE`, intercept unpenalised) on the one-hot
    cell. Returns ``(values (15625,) float64, measured indices)``.
    """
    s = parse_estimate(spec) if isinstance(spec, str) else spec
    rows = measured_sample(truth, s.cells, seed)
    y = truth.values[rows]
    if s.kind == "fit":
        x = onehot_features()
        a = np.c_[x[rows], np.ones(rows.size)]
        reg = FIT_RIDGE * np.eye(a.shape[1])
        reg[-1, -1] = 0.0
        w = np.linalg.solve(a.T @ a + reg, a.T @ y)
        out = np.c_[x, np.ones(x.shape[0])] @ w
    else:
        if proxy is None:
            raise ValueError(f"the {s.kind} estimate needs the {s.kind} of every cell (proxy=)")
        x = np.asarray(proxy, dtype=np.float64)
        if x.shape != truth.values.shape or not (np.isfinite(x).all() and (x > 0).all()):
            raise ValueError(f"the {s.kind} table needs {truth.values.size} positive finite "
                             f"values, got shape {x.shape}")
        xs = x[rows]
        if np.ptp(xs) == 0:
            raise ValueError(f"the {s.cells} measured cells all have the same {s.kind}: no power "
                             "law can be fitted (measure more cells)")
        k, logc = np.polyfit(np.log(xs), np.log(y), 1)
        out = np.exp(logc + k * np.log(x))
    out = np.asarray(out, dtype=np.float64)
    out[rows] = y
    return out, rows
