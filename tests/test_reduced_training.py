"""Reduced training (docs/reduced_training.md): packed training = per-model training step for
step, the data pipeline, the spec grammar and the score-file record.

The equivalence checks (``check_states``, ``check_accuracies``, ``check_float32_step``) are shown
failing on injected defects in ``test_equivalence_check_catches`` and
``test_float32_check_catches``.
"""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from engine_checks import SPECIAL

from zcfast import reduced_training as rt
from zcfast.batched import train as packed_train
from zcfast.batched.engine import codes_of
from zcfast.batched.train import PackedTrainer, model_state
from zcfast.scoring import parse_proxies, read_scores, score_to_file
from zcfast.spaces import nb201
from zcfast.spaces.nb201_model import build_model

# tiny and fast: 2 steps per epoch, so 4 steps cross an epoch boundary (the learning rate
# changes); 4 channels and batch 32 keep training smooth enough that float64 rounding stays
# at 1e-10 after 4 steps (2 channels and batch 16 amplify it to 1e-6 within 9 steps)
SPEC = "econas:epochs=2+channels=4+resolution=8+images=64+batch=32"
STEPS = 4
# the engine's special cells (all-none, pooling-only, skip-only outputs...) plus 3 cells drawn
# at random (seeded, so a failure reproduces): together a ragged pack of widths and op mixes
CELLS = [nb201.index_of(a) for a in SPECIAL] + [int(i) for i in nb201.sample(3, seed=16)]
# stated tolerance: every parameter and running statistic of every candidate after STEPS
# float64 steps within 1e-8 of the per-model network's, relative to the key's scale
# (see _scale); the worst seen on correct runs: 1.7e-12 on these 8 cells, 7e-11 on 16
TOL64 = 1e-8


@pytest.fixture(scope="module")
def data():
    return rt.training_data("cifar10")


@pytest.fixture(scope="module")
def batches(data):
    """The test runs' batches; 96 held-out images keep the accuracy checks short."""
    short = dataclasses.replace(data, val_x=data.val_x[::10][:96], val_y=data.val_y[::10][:96])
    return rt.Batches(short, rt.parse_spec(SPEC), seed=0)


_REFS: dict = {}


def per_model(cells, batches, *, steps, dtype, flavour, evaluate=True):
    """Per-model references (cached: several tests compare against the same runs)."""
    out = []
    for i in cells:
        key = (i, steps, dtype, flavour, evaluate, id(batches))
        if key not in _REFS:
            _REFS[key] = rt.train_loop(i, SPEC, batches, seed=0, flavour=flavour, dtype=dtype,
                                       steps=steps, evaluate=evaluate)
        out.append(_REFS[key])
    return out


# ---- the checks --------------------------------------------------------------------------
def _scale(ref: dict, key: str) -> float:
    """What an error in ``key`` is measured against: the key's largest value, at least 1e-3
    (parameters that only weight decay moves stay near 0); a running mean against the
    channel's running standard deviation (a mean that is 0 in exact arithmetic, as after a
    non-affine BatchNorm, is pure rounding)."""
    sc = float(ref[key].abs().max())
    if key.startswith("bn.running_mean:"):
        sc = max(sc, float(ref[key.replace("running_mean", "running_var")].abs().max()) ** 0.5)
    return max(sc, 1e-3)


def state_error(packed: PackedTrainer, k: int, net) -> tuple:
    """(worst scaled error, key) between candidate k of ``packed`` and the per-model ``net``;
    the two must hold the same parameters and running statistics."""
    ref, got = model_state(net), packed.candidate_state(k)
    assert set(ref) == set(got), sorted(set(ref) ^ set(got))
    return max(((float((got[key] - ref[key]).abs().max()) / _scale(ref, key), key) for key in ref),
               default=(0.0, None))


def make_packed(cells, *, dtype, flavour, cls=PackedTrainer, **kw):
    cfg = rt.parse_spec(SPEC)
    opts = dict(lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                nesterov=cfg.nesterov)
    opts.update(kw)
    return cls(codes_of(cells), 10, flavour=flavour, seed=0, input_size=cfg.resolution,
               init_channels=cfg.channels, dtype=dtype, **opts)


def check_states(packed, refs, cells, tol=TOL64):
    """Every parameter and running statistic of every candidate within ``tol`` (scaled)."""
    for k, (i, (_, net)) in enumerate(zip(cells, refs)):
        err, key = state_error(packed, k, net)
        assert err <= tol, f"cell {i}: {key} differs by {err:.3g} (scaled) after training"


def check_accuracies(acc_packed, refs, cells):
    """Held-out accuracies identical (float64: no prediction is near enough a tie to flip)."""
    for k, (i, (acc, _)) in enumerate(zip(cells, refs)):
        assert acc_packed[k] == acc, f"cell {i}: packed accuracy {acc_packed[k]} vs {acc}"


# ---- equivalence: float64, several steps across an epoch boundary ------------------------
@pytest.mark.parametrize("flavour", ["paper", "official"])
def test_packed_equals_per_model_float64(batches, flavour):
    refs = per_model(CELLS, batches, steps=STEPS, dtype=torch.float64, flavour=flavour)
    t = make_packed(CELLS, dtype=torch.float64, flavour=flavour)
    acc = rt.run(t, batches, STEPS)
    check_states(t, refs, CELLS)
    check_accuracies(acc, refs, CELLS)
    # training moved the weights: the comparison is not of two untouched initialisations
    net0 = build_model(CELLS[-1], 10, flavour=flavour, seed=0, init_channels=4, dtype=torch.float64)
    moved = model_state(refs[-1][1])
    assert max(float((moved[k] - v).abs().max()) for k, v in model_state(net0).items()) > 1e-3


class _MeanLoss(PackedTrainer):
    """Defect: the candidates' losses averaged instead of summed (gradients shrink by K)."""

    def step(self, x, y):
        self.train()
        ws, bs = self.views()
        logits = self.forward(x.to(self.device, self.dtype), ws, bs)
        B, K, n = logits.shape
        loss = F.cross_entropy(logits.reshape(B * K, n), y.repeat_interleave(K))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


class _FixedLR(PackedTrainer):
    """Defect: the learning rate never follows the schedule."""

    def set_lr(self, lr):
        super().set_lr(0.1)


class _NoEval(PackedTrainer):
    """Defect: evaluation normalises with the batch's statistics instead of the running ones
    (the running statistics themselves stay right)."""

    def _norm(self, h, site):
        s = self.bn_sites.get(site)
        if self.training or s is None:
            return super()._norm(h, site)
        a, b, n = s.off, s.off + self.n_bn, s.n
        return F.batch_norm(h, None, None, self.bn[a : a + n], self.bn[b : b + n], training=True)


class _FrozenBN(PackedTrainer):
    """Defect: the BatchNorm affine parameters are not trained."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.bn.requires_grad_(False)


@pytest.mark.parametrize("defect", ["mean_loss", "no_weight_decay", "no_nesterov",
                                    "bn_momentum", "frozen_bn", "fixed_lr", "data_order",
                                    "no_eval_mode"])
def test_equivalence_check_catches(batches, data, monkeypatch, defect):
    """Each injected defect in the packed path makes the float64 check fail."""
    cells = CELLS
    refs = per_model(cells, batches, steps=STEPS, dtype=torch.float64, flavour="paper")
    kw, cls, b = {}, PackedTrainer, batches
    if defect == "mean_loss":
        cls = _MeanLoss
    elif defect == "no_weight_decay":
        kw = {"weight_decay": 0.0}
    elif defect == "no_nesterov":
        kw = {"nesterov": False}
    elif defect == "bn_momentum":
        monkeypatch.setattr(packed_train, "BN_MOMENTUM", 0.2)
    elif defect == "frozen_bn":
        cls = _FrozenBN
    elif defect == "fixed_lr":
        cls = _FixedLR
    elif defect == "data_order":
        b = rt.Batches(data, rt.parse_spec(SPEC), seed=1)
    elif defect == "no_eval_mode":
        cls = _NoEval
    t = make_packed(cells, dtype=torch.float64, flavour="paper", cls=cls, **kw)
    acc = rt.run(t, b, STEPS)
    with pytest.raises(AssertionError):
        check_states(t, refs, cells)
        check_accuracies(acc, refs, cells)


# ---- float32: one step, against float32's own resolution ---------------------------------
def check_float32_step(packed32, ref32, ref64, cells):
    """After one step, |packed32 - ref64| <= 32 |ref32 - ref64| + 16 ulps of the key's scale
    (per key): the packed float32 path is as accurate as PyTorch's own float32, up to a
    factor (docs/reduced_training.md; the idea of docs/engine.md's float32 criterion). Later
    steps are not compared in float32: near-tie ReLUs flip differently in any two float32
    runs and training amplifies it (the float64 check covers several steps)."""
    u = 2.0 ** -24
    for k, i in enumerate(cells):
        r64, r32, got = model_state(ref64[k][1]), model_state(ref32[k][1]), packed32.candidate_state(k)
        for key in r64:
            sc = _scale(r64, key)
            own = float((r32[key] - r64[key]).abs().max())
            err = float((got[key] - r64[key]).abs().max())
            assert err <= 32 * own + 16 * u * sc, (
                f"cell {i}: {key} off float64 by {err:.3g}, PyTorch's float32 by {own:.3g}")


@pytest.mark.parametrize("flavour", ["paper", "official"])
def test_packed_float32_first_step(batches, flavour):
    ref64 = per_model(CELLS, batches, steps=1, dtype=torch.float64, flavour=flavour, evaluate=False)
    ref32 = per_model(CELLS, batches, steps=1, dtype=torch.float32, flavour=flavour, evaluate=False)
    t = make_packed(CELLS, dtype=torch.float32, flavour=flavour)
    rt.run(t, batches, 1, evaluate=False)
    check_float32_step(t, ref32, ref64, CELLS)


class _LowPrecisionGrad(PackedTrainer):
    """Defect: gradients rounded to bfloat16 before the update."""

    def step(self, x, y):
        opt_step = self.opt.step

        def rounded():
            for p in (self.w, self.bn):
                p.grad = p.grad.bfloat16().to(p.dtype)
            opt_step()

        self.opt.step = rounded
        try:
            return super().step(x, y)
        finally:
            self.opt.step = opt_step


def test_float32_check_catches(batches):
    cells = CELLS[-3:]
    ref64 = per_model(cells, batches, steps=1, dtype=torch.float64, flavour="paper", evaluate=False)
    ref32 = per_model(cells, batches, steps=1, dtype=torch.float32, flavour="paper", evaluate=False)
    t = make_packed(cells, dtype=torch.float32, flavour="paper", cls=_LowPrecisionGrad)
    rt.run(t, batches, 1, evaluate=False)
    with pytest.raises(AssertionError):
        check_float32_step(t, ref32, ref64, cells)


# ---- the schedule, the data ----------------------------------------------------------------
def test_lr_schedule_is_cosine_annealing():
    cfg = rt.parse_spec("econas:epochs=7+schedule=10")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.schedule_epochs, eta_min=0)
    for e in range(cfg.epochs):
        assert math.isclose(opt.param_groups[0]["lr"], cfg.lr_at(e), rel_tol=1e-12, abs_tol=1e-15)
        opt.step()
        sched.step()
    assert rt.parse_spec("econas").schedule_epochs == 40  # the paper's 20 of 40 epochs
    assert rt.parse_spec("econas:epochs=5").schedule_epochs == 10


def test_epoch_order_and_augmentation(data):
    cfg = rt.parse_spec("econas:images=300+batch=64+resolution=32")
    b = rt.Batches(data, cfg, seed=5)
    order, oy, ox, flip = b.augmentation(3)
    assert sorted(order) == sorted(b.subset) and len(set(order)) == 300  # each image once
    xs, ys = zip(*b.epoch(3))
    assert [len(y) for y in ys] == [64, 64, 64, 64, 44]  # the last batch is short
    x, y = torch.cat(xs), torch.cat(ys)
    assert torch.equal(y, torch.from_numpy(data.train_y[order]))
    # every image: its own crop of the zero-padded copy, flipped or not, normalised
    mean = np.asarray(data.mean, np.float32).reshape(3, 1, 1)
    std = np.asarray(data.std, np.float32).reshape(3, 1, 1)
    for n in (0, 17, 299):
        img = np.pad(data.train_x[order[n]], ((4, 4), (4, 4), (0, 0)))
        crop = img[oy[n] : oy[n] + 32, ox[n] : ox[n] + 32]
        crop = crop[:, ::-1] if flip[n] else crop
        want = (crop.transpose(2, 0, 1).astype(np.float32) / 255 - mean) / std
        np.testing.assert_allclose(x[n].numpy(), want, rtol=0, atol=1e-6)
    # deterministic in the seed; another epoch, another order
    again = torch.cat([xb for xb, _ in rt.Batches(data, cfg, seed=5).epoch(3)])
    assert torch.equal(again, x)
    assert not np.array_equal(b.augmentation(4)[0], order)
    assert not np.array_equal(rt.Batches(data, cfg, seed=6).augmentation(3)[0], order)


def test_resolution_and_subset(data):
    b = rt.Batches(data, rt.parse_spec("econas:images=100+batch=40"), seed=0)
    assert b.n_train == 100 and len(set(b.subset)) == 100
    x, _ = next(iter(b.epoch(0)))
    assert x.shape == (40, 3, 8, 8)
    assert b.val[0][0].shape == (40, 3, 8, 8) and b.n_val == 1000
    # a constant image stays constant through the antialiased resize
    flat = torch.full((1, 3, 32, 32), 0.25)
    assert torch.allclose(rt._resize(flat, 8), torch.full((1, 3, 8, 8), 0.25), atol=1e-7)
    with pytest.raises(ValueError, match="images=5000"):
        rt.Batches(data, rt.parse_spec("econas:images=5000"), seed=0)


def test_held_out_images_are_not_training_images(data):
    train = {bytes(im) for im in data.train_x}
    assert not any(bytes(im) in train for im in data.val_x)
    assert len(data.val_x) == 1000 and np.bincount(data.val_y).tolist() == [100] * 10


def test_datasets_without_real_labelled_images():
    with pytest.raises(ValueError, match="ImageNet16-120"):
        rt.training_data("ImageNet16-120")
    with pytest.raises(ValueError, match="data_root"):
        rt.training_data("cifar100")


# ---- the spec grammar ----------------------------------------------------------------------
def test_spec_parsing():
    d = rt.parse_spec("econas")
    assert (d.epochs, d.channels, d.resolution, d.images, d.batch) == (20, 4, 8, None, 256)
    c = rt.parse_spec("econas:epochs=5+channels=8+resolution=16+images=500+batch=64+schedule=40")
    assert (c.epochs, c.channels, c.resolution, c.images, c.batch, c.schedule_epochs) == \
        (5, 8, 16, 500, 64, 40)
    assert rt.spec_of(c) == "econas:epochs=5+schedule=40+channels=8+resolution=16+images=500+batch=64"
    assert rt.parse_spec(rt.spec_of(c)) == c
    assert rt.spec_of(rt.parse_spec("econas")) == "econas"
    assert rt.is_spec("econas:epochs=2") and not rt.is_spec("synflow")
    for bad, word in [("econas:epoch=3", "epoch=3"), ("econas:epochs=3+epochs=4", "twice"),
                      ("econas:epochs=x", "epochs='x'"), ("econas:resolution=10", "resolution=10"),
                      ("econas:epochs=0", "epochs=0"), ("econas:epochs=30+schedule=20", "schedule=20"),
                      ("econas[epochs=3]", "econas\\[epochs=3\\]")]:
        with pytest.raises(ValueError, match=word):
            rt.parse_spec(bad)


def test_parse_proxies_keeps_specs_as_written():
    names = parse_proxies("synflow, econas:epochs=2+channels=8 ,snip,econas")
    assert names == ["synflow", "econas:epochs=2+channels=8", "snip", "econas"]
    assert parse_proxies("econas") == ["econas"]
    with pytest.raises(ValueError, match="chanels"):
        parse_proxies("synflow,econas:chanels=8")
    with pytest.raises(ValueError, match="snipp"):
        parse_proxies("snipp,econas")


def test_narrow_network_counts():
    """The packed plan at init_channels 4 has the per-model network's parameters."""
    from zcfast.batched.engine import PackedNB201

    for flavour in ("paper", "official"):
        eng = PackedNB201(codes_of(CELLS), 10, flavour=flavour, init_channels=4, input_size=8)
        cnt = eng.counts()["params"]
        for k, i in enumerate(CELLS):
            net = build_model(i, 10, flavour=flavour, init_channels=4)
            assert cnt[k] == sum(p.numel() for p in net.parameters())
    with pytest.raises(ValueError, match="init_channels"):
        build_model(0, 10, init_channels=0)


# ---- scores and their record ---------------------------------------------------------------
def test_score_file_records_reduction_and_images(tmp_path):
    spec = "econas:epochs=1+images=64+batch=32"
    out = tmp_path / "s.csv"
    res = score_to_file(out, archs=[6111, 0, 17], proxies=f"synflow,{spec}", progress=False)
    df, meta = read_scores(out)
    assert list(df.columns) == ["arch", "synflow", spec]
    rec = meta["reduced_training"][spec]
    assert (rec["epochs"], rec["schedule"], rec["channels"], rec["resolution"], rec["images"],
            rec["batch"], rec["steps"]) == (1, 2, 4, 8, 64, 32, 2)
    assert "64 images drawn" in rec["train_images"] and rec["n_val_images"] == 1000
    assert "test images" in rec["val_images"]
    assert ((df[spec] >= 0) & (df[spec] <= 100)).all()
    # the zero-cost column is the one a zero-cost-only file gets
    alone = tmp_path / "z.csv"
    score_to_file(alone, archs=[6111, 0, 17], proxies="synflow", progress=False)
    assert np.array_equal(read_scores(alone)[0]["synflow"].to_numpy(), df["synflow"].to_numpy())
    # resume: nothing left to do; the per-model engine gives the same accuracies
    assert score_to_file(out, archs=[6111, 0, 17], proxies=f"synflow,{spec}", resume=True,
                         progress=False)["scored"] == 0
    loop = tmp_path / "l.csv"
    score_to_file(loop, archs=[6111, 0, 17], proxies=spec, engine="loop", progress=False)
    np.testing.assert_allclose(read_scores(loop)[0][spec].to_numpy(), df[spec].to_numpy(), atol=0.3)
    assert res["meta"]["reduced_training"] == json.loads(out.with_name("s.csv.meta.json").read_text())["reduced_training"]


def _cifar10_download(root, n_train, n_test, seed=5):
    """A folder in the official CIFAR-10 python layout (cifar-10-batches-py: pickled dicts,
    rows of 1024 R, 1024 G, 1024 B), with random images and labels."""
    import pickle

    g = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def dump(name, n):
        img = g.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        lab = g.integers(0, 10, size=n).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"labels": lab, b"data": img.transpose(0, 3, 1, 2).reshape(n, 3072)},
                        f, protocol=2)
        return img, lab

    train = [dump(f"data_batch_{k}", n_train // 5) for k in range(1, 6)]
    return train, dump("test_batch", n_test)


def test_reduced_training_on_a_cifar_download(tmp_path, capsys):
    """--data-root: reduced training trains on the download's training set and scores on its
    test set, and the file's record says so (the bundled images are not used)."""
    from zcfast.cli import main as cli

    _, (test_img, test_lab) = _cifar10_download(tmp_path / "dl", n_train=80, n_test=20)
    data = rt.training_data("cifar10", data_root=tmp_path / "dl")
    assert (len(data.train_x), len(data.val_x)) == (80, 20)
    np.testing.assert_array_equal(data.val_x, test_img)
    np.testing.assert_array_equal(data.val_y, test_lab)
    spec = "econas:epochs=1+batch=40"
    out = tmp_path / "s.csv"
    # the per-model engine, whose training is rt.train_loop's below: the packed one equals it in
    # float64 and at the first float32 step (tests above), but after two float32 steps one of
    # these 20 near-random predictions can flip with the CPU's rounding (seen on an AMD EPYC:
    # 10% packed, 15% per model), and this test is about the images, not the engine
    assert cli(["score", "--archs", "2", "--proxies", spec, "--data-root", str(tmp_path / "dl"),
                "--out", str(out), "--no-progress", "--threads", "1", "--engine", "loop"]) == 0
    df, meta = read_scores(out)
    rec = meta["reduced_training"][spec]
    assert rec["n_val_images"] == 20 and rec["steps"] == 2  # 80 images, batch 40, one epoch
    assert str(tmp_path / "dl") in rec["train_images"] and str(tmp_path / "dl") in rec["val_images"]
    # the scores are those of training on the download (not on the bundled images)
    idx = [int(i) for i in df.index]  # NB201 indices
    b = rt.Batches(data, rt.parse_spec(spec), seed=0)
    direct = [rt.train_loop(i, spec, b, seed=0)[0] for i in idx]
    np.testing.assert_allclose(df[spec].to_numpy(), direct, atol=1e-9)
    # the test set is part of the setting: changed under the same folder (same training set,
    # so the same image-source name), --resume refuses to continue the file
    _cifar10_download(tmp_path / "dl2", n_train=80, n_test=20, seed=6)
    batches = "cifar-10-batches-py/test_batch"
    (tmp_path / "dl" / batches).write_bytes((tmp_path / "dl2" / batches).read_bytes())
    assert rt.training_data("cifar10", data_root=tmp_path / "dl").val_description != \
        data.val_description
    capsys.readouterr()
    assert cli(["score", "--archs", "2", "--proxies", spec, "--data-root", str(tmp_path / "dl"),
                "--out", str(out), "--no-progress", "--threads", "1", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "reduced_training" in err and "archs_spec" not in err


def test_score_api(data):
    df = rt.score([6111, 0, 6111], ["econas:epochs=1+images=64+batch=32"], chunk=2)
    assert list(df.index) == [6111, 0, 6111] and df.iloc[0, 1] == df.iloc[2, 1]
    rec = df.attrs["reduced_training"]["econas:epochs=1+images=64+batch=32"]
    assert rec["n_train_images"] == 64 and rec["steps"] == 2
    with pytest.raises(ValueError, match="chunk"):
        rt.score([0], "econas:epochs=1+images=64", chunk=0)


@pytest.mark.gpu
def test_packed_training_on_gpu_equals_per_model(batches):
    refs = per_model(CELLS, batches, steps=STEPS, dtype=torch.float64, flavour="paper")
    cfg = rt.parse_spec(SPEC)
    t = PackedTrainer(codes_of(CELLS), 10, seed=0, input_size=cfg.resolution,
                      init_channels=cfg.channels, dtype=torch.float64, device="cuda")
    acc = rt.run(t, batches, STEPS)
    check_states(t, refs, CELLS)
    check_accuracies(acc, refs, CELLS)


def test_reduced_training_needs_nb201(tmp_path):
    with pytest.raises(ValueError, match="train NB201 networks"):
        score_to_file(tmp_path / "x.csv", space="nb101", archs="2", proxies="synflow,econas",
                      progress=False)
    assert not (tmp_path / "x.csv").exists()
