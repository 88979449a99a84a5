"""What a score depends on is chosen, recorded and checked: the three seeds (cell sampling,
weights, minibatch), the device (auto by default, reported everywhere) and the normalisation of
the images (the paper's by default). docs/data.md and docs/nb201.md define them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import zcfast
from zcfast import cli
from zcfast.data import minibatch
from zcfast.proxies import compute_measures
from zcfast.scoring import cpu_name, read_scores, resolve_device, score_to_file
from zcfast.spaces import nb201
from zcfast.spaces.nb201_model import build_model

DS = "ImageNet16-120"  # 16x16 networks: the loop engine scores a cell in well under a second
PROX = "synflow,nwot"  # synflow reads the weights only, nwot the weights and the batch


def run(out, **kw):
    args = dict(archs="2", proxies=PROX, dataset=DS, batch_size=8, engine="loop", progress=False,
                seed=1)
    args.update(kw)
    return score_to_file(out, **args)


def meta_of(out) -> dict:
    return json.loads(Path(str(out) + ".meta.json").read_text())


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("seeds") / "base.csv"
    run(out)
    return read_scores(out)[0]


def test_one_seed_drives_all_three_by_default(base, tmp_path):
    out = tmp_path / "b.csv"
    run(out)
    m = meta_of(out)
    assert (m["seed"], m["sample_seed"], m["weight_seed"], m["data_seed"]) == (1, 1, 1, 1)
    assert list(base.index) == nb201.sample(2, seed=1).tolist()


@pytest.mark.parametrize("which", ["sample_seed", "weight_seed", "data_seed"])
def test_each_seed_moves_only_its_part(base, tmp_path, which):
    out = tmp_path / f"{which}.csv"
    run(out, **{which: 7})
    df, m = read_scores(out)
    assert m[which] == 7 and all(m[k] == 1 for k in ("sample_seed", "weight_seed", "data_seed")
                                 if k != which)
    if which == "sample_seed":
        assert list(df.index) == nb201.sample(2, seed=7).tolist()
        return
    assert list(df.index) == list(base.index)
    if which == "weight_seed":
        assert (df.synflow != base.synflow).all()  # new weights
    else:
        assert (df.synflow == base.synflow).all()  # same weights, synflow reads no data
        assert (df.nwot != base.nwot).all()  # another batch
    # the values are the reference proxies of exactly these weights and this batch
    i = int(df.index[0])
    x, y, _ = minibatch(DS, 8, seed=7 if which == "data_seed" else 1)
    net = build_model(i, 120, seed=7 if which == "weight_seed" else 1)
    ref = compute_measures(net, x, y, ["synflow", "nwot"])
    assert df.loc[i, "synflow"] == ref["synflow"] and df.loc[i, "nwot"] == ref["nwot"]


def test_resume_compares_every_seed(tmp_path):
    out = tmp_path / "r.csv"
    run(out, archs="1")
    for k in ("sample_seed", "weight_seed", "data_seed"):
        with pytest.raises(ValueError, match=k):
            run(out, archs="1", resume=True, **{k: 5})
    run(out, archs="1", resume=True, weight_seed=1)  # the same settings spelled out: fine
    # a file from before the three seeds: its one seed drove all three
    m = meta_of(out)
    for k in ("sample_seed", "weight_seed", "data_seed", "normalization", "normalization_mean",
              "normalization_std"):
        m.pop(k)
    Path(str(out) + ".meta.json").write_text(json.dumps(m))
    run(out, archs="1", resume=True)
    with pytest.raises(ValueError, match="data_seed: file 1 vs now 2"):
        run(out, archs="1", resume=True, data_seed=2)


def test_seed_cli_flags(tmp_path, capsys):
    out = tmp_path / "c.csv"
    assert cli.main(["score", "--engine", "loop", "--archs", "2", "--dataset", DS, "--batch-size",
                     "8", "--proxies", "params", "--seed", "3", "--weight-seed", "4",
                     "--data-seed", "5", "--out", str(out), "--no-progress"]) == 0
    m = meta_of(out)
    assert (m["sample_seed"], m["weight_seed"], m["data_seed"]) == (3, 4, 5)
    text = capsys.readouterr().out
    assert "seeds: sample 3, weights 4, data 5" in text
    with pytest.raises(SystemExit):  # argparse: not an integer
        cli.main(["score", "--archs", "2", "--proxies", "params", "--weight-seed", "x",
                  "--out", str(tmp_path / "d.csv"), "--no-progress"])
    assert "--weight-seed" in capsys.readouterr().err
    with pytest.raises(ValueError, match="weight_seed"):
        run(tmp_path / "e.csv", weight_seed="4")


# ---- device ---------------------------------------------------------------------------------
def test_device_defaults_to_auto(monkeypatch):
    assert cli.build_parser().parse_args(["score", "--out", "x.csv"]).device == "auto"
    assert resolve_device(None) == resolve_device("auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None).type == "cuda" and resolve_device("auto").type == "cuda"
    assert resolve_device("cpu").type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(ValueError, match="tpu"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda:0")


def test_every_report_says_which_device_ran(tmp_path, capsys):
    dev = resolve_device("auto")
    out = tmp_path / "d.csv"
    assert cli.main(["score", "--engine", "loop", "--archs", "2", "--dataset", DS, "--batch-size",
                     "8", "--proxies", "params,flops", "--out", str(out), "--no-progress"]) == 0
    m = meta_of(out)
    assert m["device"] == str(dev)
    if dev.type == "cpu":
        assert m["device_name"] == cpu_name()
    assert f"device {dev}" in capsys.readouterr().out
    assert cli.main(["correlate", str(out)]) == 0
    assert f"device {dev}" in capsys.readouterr().out
    df = zcfast.score([0, 5], ["params"], dataset=DS, batch_size=4)
    assert df.attrs["device"] == str(dev) and df.attrs["device_name"] == m["device_name"]


def test_resume_on_another_device_is_recorded(tmp_path, monkeypatch):
    """Recorded with the first row the resumed run writes (tests/test_score_files.py: a resume
    that is refused records nothing)."""
    out, archs = tmp_path / "m.csv", tmp_path / "a.txt"
    archs.write_text("3\n")
    run(out, archs=str(archs))
    m = meta_of(out)
    m["device"], m["device_name"] = "cuda:0", "some GPU"
    Path(str(out) + ".meta.json").write_text(json.dumps(m))
    archs.write_text("3\n4\n")
    run(out, archs=str(archs), resume=True)
    m2 = meta_of(out)
    assert m2["device"] == f"cuda:0 + {resolve_device('auto')}"
    assert m2["device_name"].startswith("some GPU + ")


# ---- normalisation -------------------------------------------------------------------------
def test_normalization_recorded_and_compared(tmp_path, capsys):
    out = tmp_path / "n.csv"
    kw = dict(archs="1", dataset="cifar100", proxies="nwot", batch_size=4)
    run(out, **kw)
    m = meta_of(out)
    assert m["normalization"] == "paper"
    assert m["normalization_mean"] == pytest.approx([0.4914, 0.4822, 0.4465])
    assert "CIFAR-10's mean and std" in m["images_description"]
    with pytest.raises(ValueError, match="normalization"):
        run(out, resume=True, normalization="dataset", **kw)
    # a CIFAR-100 file from before the option was normalised with CIFAR-100's statistics
    m.pop("normalization")
    Path(str(out) + ".meta.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="normalization: file 'dataset' vs now 'paper'"):
        run(out, resume=True, **kw)
    run(out, resume=True, normalization="dataset", **kw)
    # data-free proxies do not read the pixels: such a file resumes across the change
    free = tmp_path / "f.csv"
    run(free, archs="1", dataset="cifar100", proxies="synflow,params", batch_size=4)
    mf = meta_of(free)
    mf.pop("normalization")
    Path(str(free) + ".meta.json").write_text(json.dumps(mf))
    run(free, archs="1", dataset="cifar100", proxies="synflow,params", batch_size=4, resume=True)
    # the option from the command line
    out2 = tmp_path / "n2.csv"
    assert cli.main(["score", "--engine", "loop", "--archs", "1", "--dataset", "cifar100",
                     "--batch-size", "4", "--proxies", "params", "--normalization", "dataset",
                     "--out", str(out2), "--no-progress"]) == 0
    assert meta_of(out2)["normalization"] == "dataset"
    assert "CIFAR-100's own mean and std" in capsys.readouterr().out
    df = zcfast.score([0], ["params"], dataset="cifar100", batch_size=4, normalization="dataset")
    assert df.attrs["normalization"] == "dataset"
