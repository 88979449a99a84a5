"""Rebuild the NAS-Bench-NLP bundle of zcfast/data/_bundled from the team's copies of the
benchmark's WikiText-2 training logs and of the WikiText-2 validation text.

Run once by a maintainer (needs the folder ../shared/data); users never run it: the bundle is
committed. Values are copied, never recomputed:

- ``nbnlp_wikitext2_logs.json.gz``: every log of ``train_logs_wikitext-2/logs.zip`` (345 runs),
  its identifying fields, the cell graph string as logged, ``num_params`` and the per-epoch
  train/validation/test losses; the training set-up shared by all runs is stored once (the
  script checks that it is shared);
- ``wikitext2_valid.txt.gz``: WikiText-2's validation split, byte for byte (gzip of the file).

    python scripts/bundle_nbnlp.py --shared ../shared/data
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import zipfile
from pathlib import Path

LOGS = "nasbench-nlp-wikitext2/logs.zip"
LOGS_SHA256 = "f5052d6bea6398001e32c986322a243e8cdedffa906caf242eb0a62ee105aa12"
VALID = "wikitext2-valid-test/valid.txt"
VALID_SHA256 = "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8"
# the training set-up of the runs: identical in every log (checked below), stored once
SETUP_FIELDS = ("data", "recepies_list_path", "batch_size", "model", "emsize", "nhid", "nlayers",
                "dropout", "dropouth", "dropouti", "dropoute", "wdrop", "tied", "bptt", "lr",
                "wdecay", "epochs", "alpha", "beta", "clip", "eval_batch_size")
RUN_FIELDS = ("recepie_id", "experiment_id", "init_time", "status", "num_params", "recepie",
              "train_losses", "val_losses", "test_losses")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path,
                    default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).resolve().parents[1] / "zcfast" / "data" / "_bundled")
    a = ap.parse_args()

    raw = (a.shared / LOGS).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == LOGS_SHA256, f"{a.shared / LOGS} is not the expected file"
    runs, setup = [], None
    with zipfile.ZipFile(a.shared / LOGS) as zf:
        for name in sorted(zf.namelist()):
            if not name.endswith(".json"):
                continue
            log = json.loads(zf.read(name))
            s = {k: log[k] for k in SETUP_FIELDS}
            assert setup is None or s == setup, f"{name}: its training set-up differs"
            setup = s
            runs.append({"file": name.rsplit("/", 1)[-1], **{k: log[k] for k in RUN_FIELDS}})
    bundle = {
        "source": "GitHub fmsnew/nas-bench-nlp-release, train_logs_wikitext-2/logs.zip "
                  "(commit 0ba10e2fa5634a8136117ba94b880fefe2336ebc)",
        "source_sha256": LOGS_SHA256,
        "licence": "Apache-2.0 (nas-bench-nlp-release); cite Klyuchnikov et al., NAS-Bench-NLP, 2020",
        "setup": setup,
        "runs": runs,
    }
    out = a.out / "nbnlp_wikitext2_logs.json.gz"
    out.write_bytes(gzip.compress(json.dumps(bundle, sort_keys=True).encode(), 9, mtime=0))
    ok = sum(r["status"] == "OK" for r in runs)
    print(f"{out.name}: {len(runs)} runs ({ok} finished), {out.stat().st_size / 1e3:.1f} kB")

    text = (a.shared / VALID).read_bytes()
    assert hashlib.sha256(text).hexdigest() == VALID_SHA256, f"{a.shared / VALID} is not the expected file"
    out = a.out / "wikitext2_valid.txt.gz"
    out.write_bytes(gzip.compress(text, 9, mtime=0))
    print(f"{out.name}: {len(text):,} bytes of text, {out.stat().st_size / 1e3:.1f} kB")


if __name__ == "__main__":
    main()
