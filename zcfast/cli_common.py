"""Command-line arguments shared by zcfast's subcommands (no torch import: help and bad input
are answered before the heavy imports)."""

from __future__ import annotations

# what a data-reading proxy's score depends on besides the network and its weight seed: the
# minibatch and the flavour (docs/search.md, score settings), as argparse destinations and as
# keyword arguments of ScoreKey.of and default_scorer; `zcfast score` and `zcfast search` take them
MINIBATCH_FIELDS = ("images", "batch_size", "data_seed", "normalization", "flavour")


def refuse_overwrite(path, resume: bool) -> None:
    """FileExistsError when ``path`` is a non-empty file and ``resume`` is off: every command
    that writes results (score files, search runs) appends to an existing file only when told
    to, and never overwrites one. IsADirectoryError when ``path`` is a folder."""
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{p} is a folder: --out names the file to write")
    if not resume and p.exists() and p.stat().st_size > 0:
        raise FileExistsError(f"{p} exists; pass --resume to continue it or choose another --out")


def add_minibatch_arguments(p, *, seed_flag: str = "--seed") -> None:
    """The minibatch and network-flavour options of a scoring run: ``--data-seed``,
    ``--batch-size``, ``--images``, ``--data-root``, ``--normalization``, ``--flavour``
    (``seed_flag``: the option whose value the minibatch seed defaults to)."""
    p.add_argument("--data-seed", type=int, default=None,
                   help=f"seed of the minibatch: images drawn and their augmentation (default: "
                        f"{seed_flag})")
    p.add_argument("--batch-size", type=int, default=None,
                   help="minibatch size (default: 64 images; nbnlp: the logs' 20 sequences of 70 "
                        "tokens)")
    p.add_argument("--images", default="default",
                   help="bundled image source: default | cifar10-subset | cifar100-real25 | "
                        "imagenet16-standin")
    p.add_argument("--data-root", default=None,
                   help="folder with a standard CIFAR-10 or CIFAR-100 download (python pickle "
                        "batches), read instead of the bundled images (not with --images)")
    p.add_argument("--normalization", default="paper", choices=["paper", "dataset"],
                   help="paper: CIFAR-10's mean/std for both CIFARs, as the paper's loader "
                        "(default); dataset: CIFAR-100's own for CIFAR-100")
    p.add_argument("--flavour", default="paper", choices=["paper", "official"],
                   help="network flavour (docs/nb201.md): paper (default) or official")


def add_precision_argument(p) -> None:
    """``--precision``: the packed engine's float32 passes in fp32, bf16 or tf32."""
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "tf32"],
                   help="packed engine's float32 passes: fp32 (default), bf16 (CPU/CUDA) or tf32 "
                        "(CUDA); synflow stays float64 (docs/performance.md: fidelity per proxy)")


def check_minibatch_arguments(a) -> None:
    """The checks argparse cannot make; ValueError names the bad value."""
    if a.batch_size is not None and a.batch_size < 1:
        raise ValueError(f"--batch-size {a.batch_size}: expected a positive integer")
    if a.data_seed is not None and a.data_seed < 0:
        raise ValueError(f"--data-seed {a.data_seed}: must be a non-negative integer")
    if a.data_root is not None and a.images != "default":
        raise ValueError(f"--images {a.images!r} and --data-root {a.data_root!r}: the download is "
                         "the image source; give one of them")
