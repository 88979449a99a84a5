"""zcfast.hardware: the bundled HW-NAS-Bench table (row order, units, the Edge TPU's missing
values never used as numbers), look-ups by index / arch string / op ids, and the zero-cost
estimates of a device metric (docs/hardware.md).

Injected defects these checks were shown to catch (each made the named test fail):
- NASLib tuple read in tuple order instead of NB201 string order (t2 and t3 swapped) in
  ``naslib_tuple_to_arch``: test_naslib_tuple_mapping;
- a metric read from the neighbouring column of the bundle: test_index0_matches_hw_nas_bench_readme;
- the -1 sentinel kept as a value: test_missing_edgetpu_values_are_explicit;
- ``within`` comparing NaN-filled values (a missing value passing a budget when filled with -1):
  test_missing_edgetpu_values_are_explicit;
- the ridge fit reading its features in the wrong order (columns reversed):
  test_fit_estimate_recovers_an_additive_metric;
- measured cells drawn from all cells, unmeasured ones included:
  test_measured_sample_is_seeded_and_avoids_missing_cells.
"""

from __future__ import annotations

import numpy as np
import pytest

from zcfast import hardware as hw
from zcfast.spaces import nb201

INDEX0 = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"


def test_index0_matches_hw_nas_bench_readme():
    """NB201 index 0 on CIFAR-10, as printed in HW-NAS-Bench's README (GATECH-EIC/HW-NAS-Bench,
    query_by_index(0, 'cifar10')): checks the bundle's row order and column assignment."""
    want = {("edgegpu", "latency"): 5.807418537139893, ("edgegpu", "energy"): 24.226614330768584,
            ("raspi4", "latency"): 10.481976820010459, ("edgetpu", "latency"): 0.9571811309997429,
            ("pixel3", "latency"): 3.6058499999999998, ("eyeriss", "latency"): 3.645620000000001,
            ("eyeriss", "energy"): 0.6872827644999999, ("fpga", "latency"): 2.57296,
            ("fpga", "energy"): 18.01072}
    assert nb201.arch_at(0) == INDEX0
    for (dev, met), v in want.items():
        assert hw.lookup(0, dev, met, "cifar10") == v  # exact: values are copied, not recomputed
        assert hw.lookup(INDEX0, dev, met, "cifar10") == v  # by arch string
        assert hw.lookup(nb201.parse(INDEX0), dev, met, "c10") == v  # by op ids, dataset alias


def test_naslib_tuple_mapping():
    """NASLib's op-index tuple (edges (1,2),(1,3),(1,4),(2,3),(2,4),(3,4); ops 0 skip, 1 none,
    2 conv3x3, 3 conv1x1, 4 avg pool) of HW-NAS-Bench's index 0 is (4, 3, 3, 0, 0, 0) in the
    CSV export the bundle was built from."""
    assert hw.naslib_tuple_to_arch((4, 3, 3, 0, 0, 0)) == INDEX0
    # an asymmetric cell: every edge its own op, so any edge permutation would show
    assert hw.naslib_tuple_to_arch((0, 1, 2, 3, 4, 0)) == (
        "|skip_connect~0|+|none~0|nor_conv_1x1~1|+|nor_conv_3x3~0|avg_pool_3x3~1|skip_connect~2|")
    with pytest.raises(ValueError, match="NASLib"):
        hw.naslib_tuple_to_arch((0, 1, 2))


@pytest.mark.parametrize("ds", ["cifar10", "cifar100", "ImageNet16-120"])
def test_missing_edgetpu_values_are_explicit(ds):
    tpu = hw.metric("edgetpu", "latency", ds)
    assert tpu.missing == 4699 and tpu.measured.sum() == 15625 - 4699
    assert np.isnan(tpu.values[~tpu.measured]).all()  # never -1
    assert (tpu.values[tpu.measured] > 0).all()
    gone = int(np.flatnonzero(~tpu.measured)[0])
    with pytest.raises(hw.MissingMeasurement, match=f"no edgetpu latency .* cell {gone} "):
        hw.lookup(gone, "edgetpu", "latency", ds)
    with pytest.raises(hw.MissingMeasurement, match=r"and \d+ more"):
        tpu.at(np.flatnonzero(~tpu.measured)[:3])
    # an unmeasured cell is never within a budget, however large
    assert not tpu.within(1e9)[~tpu.measured].any()
    assert tpu.within(1e9).sum() == tpu.measured.sum()
    # statistics over the measured cells only
    assert tpu.percentile(0) == tpu.values[tpu.measured].min() > 0
    t = hw.table(ds)
    assert t["edgetpu_latency"].isna().sum() == 4699 and str(t["edgetpu_latency"].dtype) == "Float64"
    assert (t["pixel3_latency"].isna().sum(), len(t)) == (0, 15625)
    for dev in ("edgegpu", "raspi4", "pixel3", "eyeriss", "fpga"):
        assert hw.metric(dev, "latency", ds).missing == 0


def test_metrics_are_per_dataset_and_positive():
    for dev in hw.DEVICES:
        for met in hw.AVAILABLE[dev]:
            a, b = (hw.metric(dev, met, d) for d in ("cifar10", "ImageNet16-120"))
            assert (a.values[a.measured] > 0).all()
            assert not np.array_equal(a.values[a.measured], b.values[b.measured])


@pytest.mark.parametrize("call,match", [
    (lambda: hw.metric("gpu3000"), "unknown hardware device 'gpu3000'"),
    (lambda: hw.metric("raspi4", "energy"), "no energy for raspi4"),
    (lambda: hw.metric("pixel3", "power"), "unknown hardware metric 'power'"),
    (lambda: hw.metric("pixel3", "latency", "mnist"), "unknown dataset 'mnist'"),
    (lambda: hw.metric("pixel3").within(-1), "positive number, got -1"),
    (lambda: hw.lookup(15625, "pixel3"), "index 15625 is out of range"),
    (lambda: hw.parse_estimate("gbdt:10"), "cannot read hardware estimate 'gbdt:10'"),
    (lambda: hw.parse_estimate("fit:1"), "at least 2 measured cells"),
])
def test_bad_input_names_the_value(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_device_aliases():
    assert hw.device_name("Pixel-3") == "pixel3" and hw.device_name("edge_gpu") == "edgegpu"
    assert hw.metric("tpu").device == "edgetpu"


def test_fit_estimate_recovers_an_additive_metric():
    """On a synthetic metric that is exactly additive over the one-hot cell, the ridge fit on 100
    measured cells ranks all cells almost perfectly and keeps the measured values."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    w = rng.uniform(0.1, 2.0, 30)
    v = 3.0 + hw.onehot_features() @ w
    truth = hw.DeviceMetric("pixel3", "latency", "cifar10", "ms", v, np.ones(v.size, bool))
    est, rows = hw.estimate("fit:100", truth, seed=4)
    assert rows.size == 100 and np.array_equal(est[rows], v[rows])
    assert spearmanr(est, v)[0] > 0.99
    assert np.abs(est - v).max() < 0.5
    # the line estimates need their proxy table
    with pytest.raises(ValueError, match="needs the flops of every cell"):
        hw.estimate("flops:20", truth)
    power, _ = hw.estimate("params:20", truth, proxy=2.0 * v**1.5)  # an exact power-law proxy
    np.testing.assert_allclose(power, v, rtol=1e-9)
    with pytest.raises(ValueError, match="positive finite"):
        hw.estimate("flops:20", truth, proxy=-v)


def test_measured_sample_is_seeded_and_avoids_missing_cells():
    tpu = hw.metric("edgetpu", "latency", "cifar10")
    a, b = hw.measured_sample(tpu, 50, 3), hw.measured_sample(tpu, 50, 3)
    assert np.array_equal(a, b) and tpu.measured[a].all() and np.unique(a).size == 50
    assert not np.array_equal(a, hw.measured_sample(tpu, 50, 4))
