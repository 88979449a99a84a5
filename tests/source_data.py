"""Upstream source files that a few maintainer checks compare zcfast's bundled data with.

zcfast ships compact copies of public tables (zcfast/data/_bundled, built by
scripts/bundle_data.py). A handful of tests check those copies value for value against the
original files, which are too large to ship (about 5 MB). They look for them in the folder named
by ``ZCFAST_SOURCE_DATA`` (default: the maintainers' ``shared/data`` folder next to the
checkout) and skip, saying which file is missing and what the check needs it for, when it is not
there. Everything a user's install needs is bundled; these checks only re-verify the bundling.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENV = "ZCFAST_SOURCE_DATA"

# relative path -> what the file is (one definition, used by every skip message)
FILES = {
    "nb201-natsbench-landscape/nats_bench.csv":
        "the NATS-Bench export of NB201's 200-epoch test accuracies and arch strings "
        "(GitHub v-tao/nats-bench-landscape)",
    "nb201-val-accuracy/nb201_val_accuracy.csv":
        "NASLib's NB201 validation accuracies (GitHub automl/NASLib, nb201_zen.zip)",
}


def source_dir() -> Path:
    env = os.environ.get(ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def skip_reason(rel: str, purpose: str) -> str | None:
    """None when ``rel`` is present; else a sentence naming the missing file, what it is and
    why the test needs it."""
    path = source_dir() / rel
    if path.is_file():
        return None
    return (f"missing {path.name}, {FILES[rel]}: the test {purpose}; zcfast does not ship "
            f"that file. Set {ENV} to a folder holding {rel} to run it (looked in "
            f"{source_dir()})")


def needs(rel: str, purpose: str):
    """pytest mark: skip with :func:`skip_reason` unless the source file ``rel`` is present."""
    reason = skip_reason(rel, purpose)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def path(rel: str) -> Path:
    return source_dir() / rel
