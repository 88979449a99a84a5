"""Cross-check zcfast's NB101 network against the zero-cost paper's released PyTorch model.

    python bench/check_nb101_against_paper_code.py --foresight PATH [--cells 40] [--stem 16]

PATH is a checkout of SamsungLabs/zero-cost-nas (the folder holding ``foresight/``; only
``foresight/models/nasbench1*.py`` are imported, so the package's other dependencies are not
needed). For the first cells of the bundled subset, both networks are built (zcfast's with its
own weights, copied parameter by parameter into the paper's, which must have the same shapes in
the same order), and the check reports the largest difference of (a) the train-mode logits on a
random batch and (b) the BN-free prunable copies (|parameters|, float64, all-ones input), plus
how many of the cells make the released model's backward raise (its in-place ``outputs +=``).
Not part of the test suite: the released code is not a dependency of zcfast.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402


def load_paper_models(root: Path):
    """foresight.models.nasbench1 and nasbench1_spec, imported without foresight/__init__.py."""
    pkg = types.ModuleType("foresight")
    pkg.__path__ = [str(root / "foresight")]
    sub = types.ModuleType("foresight.models")
    sub.__path__ = [str(root / "foresight" / "models")]
    sys.modules.update({"foresight": pkg, "foresight.models": sub})
    mods = {}
    for name in ("nasbench1_ops", "nasbench1_spec", "nasbench1"):
        spec = importlib.util.spec_from_file_location(
            f"foresight.models.{name}", root / "foresight" / "models" / f"{name}.py")
        m = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = m
        spec.loader.exec_module(m)
        mods[name] = m
    return mods["nasbench1"], mods["nasbench1_spec"]


def main() -> None:
    from zcfast.data.nb101 import subset_groundtruth
    from zcfast.spaces import nb101
    from zcfast.spaces import nb101_model as M

    ap = argparse.ArgumentParser()
    ap.add_argument("--foresight", type=Path, required=True)
    ap.add_argument("--cells", type=int, default=40)
    ap.add_argument("--stem", type=int, default=16)
    a = ap.parse_args()
    torch.set_num_threads(1)
    net_mod, spec_mod = load_paper_models(a.foresight)
    worst_train = worst_synflow = 0.0
    crashes = 0
    codes = [int(c) for c in subset_groundtruth()["code"][: a.cells]]
    for c in codes:
        s = nb101.decode(c)
        ours = M.build_model(c, 10, seed=1, stem_channels=a.stem)
        theirs = net_mod.Network(spec_mod._ToModelSpec(s.array(), list(s.ops)), stem_out=a.stem,
                                 num_stacks=3, num_mods=3, num_classes=10)
        pa, pb = list(ours.parameters()), list(theirs.parameters())
        assert len(pa) == len(pb), f"cell {c}: {len(pa)} vs {len(pb)} parameter tensors"
        with torch.no_grad():
            for x, y in zip(pa, pb):
                assert x.shape == y.shape, f"cell {c}: {tuple(x.shape)} vs {tuple(y.shape)}"
                y.copy_(x)
        ours.train()
        theirs.train()
        x = torch.randn(8, 3, 16, 16)
        worst_train = max(worst_train, float((ours(x) - theirs(x)).abs().max().detach()))
        try:
            theirs(x).sum().backward()
        except RuntimeError:
            crashes += 1
        oa = ours.get_prunable_copy(bn=False).double()
        ob = theirs.get_prunable_copy(bn=False).double()
        with torch.no_grad():
            for p in list(oa.parameters()) + list(ob.parameters()):
                p.abs_()
            ones = torch.ones(1, 3, 16, 16, dtype=torch.float64)
            ra, rb = oa(ones), ob(ones)
        worst_synflow = max(worst_synflow, float((ra - rb).abs().max() / ra.abs().max()))
    print(f"{len(codes)} cells, stem {a.stem}: max |logit difference| (train mode) {worst_train:.3g}; "
          f"max relative difference of the BN-free copies' outputs {worst_synflow:.3g}; "
          f"released model's backward raised on {crashes} cell(s)")


if __name__ == "__main__":
    main()
