"""NAS-Bench-NLP's WikiText-2 training logs (the ground truth) and the WikiText-2 text that the
proxies' minibatch comes from (docs/nbnlp.md). Everything reads the bundle in
``zcfast/data/_bundled`` (sources and licences in its README; ``scripts/bundle_nbnlp.py`` rebuilds
it).

Losses in the logs are mean cross-entropies per token in nats, so log perplexity = loss and
perplexity = exp(loss).
"""

from __future__ import annotations

import functools
import gzip
import json
import math

import numpy as np

from zcfast.data import BUNDLED

LOGS_FILE = BUNDLED / "nbnlp_wikitext2_logs.json.gz"
TEXT_FILE = BUNDLED / "wikitext2_valid.txt.gz"
# The standard WikiText-2 vocabulary (train + valid + test words and <eos>): the size of the
# benchmark's embedding and decoder (checked against every log's num_params)
NTOKEN = 33278
EOS = "<eos>"
EARLY_EPOCHS = (1, 3, 5, 10)  # epochs of the reduced-training baselines (1-based)


@functools.cache
def _bundle() -> dict:
    return json.loads(gzip.decompress(LOGS_FILE.read_bytes()))


def setup() -> dict:
    """The training set-up shared by every logged run (emsize, nhid, nlayers, bptt, batch_size,
    dropouts, ...), as logged."""
    return dict(_bundle()["setup"])


def runs() -> list:
    """Every logged run (345) in file order: dicts with ``file``, ``recepie_id``,
    ``experiment_id``, ``init_time``, ``status`` (``OK`` = finished), ``num_params``,
    ``recepie`` (the cell graph as a JSON string) and the per-epoch ``train_losses``,
    ``val_losses``, ``test_losses``."""
    return [dict(r) for r in _bundle()["runs"]]


def _loss_at(losses, epoch: int) -> float:
    return float(losses[epoch - 1]) if len(losses) >= epoch else math.nan


@functools.cache
def _run_table():
    import pandas as pd

    rows = []
    for r in _bundle()["runs"]:
        val = np.asarray(r["val_losses"], dtype=np.float64)
        test = np.asarray(r["test_losses"], dtype=np.float64)
        finished = r["status"] == "OK"
        row = {
            "file": r["file"], "recepie_id": int(r["recepie_id"]), "status": r["status"],
            "finished": finished, "num_params": int(r["num_params"]), "epochs": len(val),
            "recepie": r["recepie"],
        }
        if finished:
            best = int(np.argmin(val))
            row.update(final_val_loss=float(val[-1]), best_val_loss=float(val[best]),
                       best_epoch=best + 1, test_at_best_val=float(test[best]),
                       final_test_loss=float(test[-1]))
        else:
            row.update(final_val_loss=math.nan, best_val_loss=math.nan, best_epoch=0,
                       test_at_best_val=math.nan, final_test_loss=math.nan)
        for e in EARLY_EPOCHS:
            row[f"val_loss_epoch{e}"] = _loss_at(r["val_losses"], e)
        rows.append(row)
    return pd.DataFrame(rows)


def run_table():
    """One row per logged run (file order): identifiers, status, ``num_params`` and the ground
    truth in log perplexity (nats): ``final_val_loss`` (epoch 50), ``best_val_loss`` (lowest
    over the epochs) and its ``best_epoch``, ``test_at_best_val`` (the test loss of that epoch:
    the model a user would pick), ``final_test_loss``, and ``val_loss_epoch{1,3,5,10}`` (the
    reduced-training baselines). Unfinished runs have NaN ground truth."""
    return _run_table().copy()


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------
@functools.cache
def corpus() -> tuple:
    """(ids, vocabulary): WikiText-2's validation split as token ids (each line split on
    whitespace plus <eos>, as the benchmark's data.Corpus reads a file) and the words in id
    order. Ids are given by first appearance in this text: the benchmark numbered the words of
    the training split first, which is not available offline (docs/nbnlp.md)."""
    text = gzip.decompress(TEXT_FILE.read_bytes()).decode("utf-8")
    vocab: dict = {}
    ids = []
    for line in text.splitlines(keepends=True):
        for w in line.split() + [EOS]:
            ids.append(vocab.setdefault(w, len(vocab)))
    assert len(vocab) <= NTOKEN
    return np.asarray(ids, dtype=np.int64), tuple(vocab)


def minibatch(batch_size: int = 20, bptt: int = 70, seed: int = 0):
    """(x, y): one seeded minibatch of real WikiText-2 text, x and y (batch_size, bptt) int64
    with y the next token of x. The text is cut into ``batch_size`` contiguous streams (the
    benchmark's ``batchify``); the batch is the window of ``bptt`` tokens of every stream at a
    start drawn with ``seed`` (the benchmark's ``get_batch`` at that position)."""
    import torch

    for name, v in (("batch_size", batch_size), ("bptt", bptt)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    ids, _ = corpus()
    nbatch = len(ids) // batch_size
    if nbatch < bptt + 1:
        raise ValueError(f"the text holds {nbatch} tokens per stream at batch_size {batch_size}; "
                         f"bptt {bptt} needs {bptt + 1}")
    streams = ids[: nbatch * batch_size].reshape(batch_size, nbatch)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x4E4C50]))
    start = int(rng.integers(0, nbatch - bptt))
    x = np.ascontiguousarray(streams[:, start : start + bptt])
    y = np.ascontiguousarray(streams[:, start + 1 : start + bptt + 1])
    return torch.from_numpy(x), torch.from_numpy(y)
