"""NAS-Bench-NLP's language model, one network per cell (docs/nbnlp.md).

Structure (the benchmark's ``AWDRNNModel`` with ``CustomRNN`` layers, fmsnew/nas-bench-nlp-release
``model.py`` and ``custom_rnn.py``): an embedding of ``ntoken`` words into ``emsize``, ``nlayers``
layers of the recurrent cell (the first reads ``emsize`` features, the others ``nhid``; the hidden
size is ``nhid``, except the last layer's, which is ``emsize`` so that the decoder can be tied),
and a decoder that shares the embedding matrix and has its own bias. Every layer starts from
zero hidden states. A linear node holds one weight matrix per input and one bias (the
benchmark's ``MultiLinear``); here each matrix is an ``nn.Linear`` (the first with the bias), so
the proxies see every matrix as a layer. The network maps tokens (B, T) to logits (B, ntoken, T),
the layout ``F.cross_entropy`` takes with targets (B, T).

Not modelled, because the zero-cost proxies score the network at initialisation, not its
training: the dropouts (embedding, input, hidden, output and weight drop: all off, so scores
are deterministic) and the activation regularisers of the training loss.

Weights: the benchmark's initialisation, drawn from counter-based streams keyed by (seed, the
network's 64-bit key folded to 32 bits, structural slot): embedding U(-0.1, 0.1), every cell
weight and bias U(-1/sqrt(h), 1/sqrt(h)) with h the layer's hidden size (``CustomRNN``
``reset_parameters``), decoder bias 0. Isomorphic cells share their canonical form, hence their
key, slots and weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from zcfast.data.nbnlp import NTOKEN
from zcfast.spaces import nbnlp
from zcfast.spaces.nb101_model import stream_code

EMSIZE, NHID, NLAYERS = 400, 600, 3
EMBEDDING_INIT = 0.1
# structural slots (stream ids): a cell weight's slot depends on (layer, node, input position)
EMBEDDING_SLOT = 1 << 20
_LAYER_STRIDE = 8 * 64
_BIAS_POS = 7


def weight_slot(layer: int, node: int, pos: int) -> int:
    """Slot of the weight matrix of input ``pos`` of linear node ``node`` (canonical order) in
    layer ``layer``."""
    return layer * _LAYER_STRIDE + node * 8 + pos


def bias_slot(layer: int, node: int) -> int:
    return layer * _LAYER_STRIDE + node * 8 + _BIAS_POS


@dataclass(frozen=True)
class Sizes:
    """The model's dimensions: NAS-Bench-NLP's (33,278 words, 400, 600, 3 layers) by default;
    the tests use tiny ones."""

    ntoken: int = NTOKEN
    emsize: int = EMSIZE
    nhid: int = NHID
    nlayers: int = NLAYERS

    def __post_init__(self):
        for k in ("ntoken", "emsize", "nhid", "nlayers"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{k} must be a positive integer, got {v!r}")

    def layers(self) -> list:
        """(input size, hidden size) of every layer (tied decoder: the last hidden is emsize)."""
        return [(self.emsize if li == 0 else self.nhid,
                 self.nhid if li < self.nlayers - 1 else self.emsize) for li in range(self.nlayers)]


def segments(cell: nbnlp.Cell, sizes: Sizes) -> list:
    """Every weight tensor of the network in a fixed order, as (kind, layer, node, pos, shape,
    slot, bound): the embedding (kind 'embedding', also the decoder's weight), then per layer,
    linear node and input the matrix (kind 'weight', shape (hidden, input size)), then per layer
    and linear node the bias (kind 'bias'). The decoder bias (zeros) is not listed."""
    out = [("embedding", -1, -1, -1, (sizes.ntoken, sizes.emsize), EMBEDDING_SLOT, EMBEDDING_INIT)]
    biases = []
    for li, (n_in, hid) in enumerate(sizes.layers()):
        bound = 1.0 / float(np.sqrt(hid))
        for j, (op, ins) in enumerate(zip(cell.ops, cell.inputs)):
            if op != nbnlp.LINEAR:
                continue
            for p, s in enumerate(ins):
                out.append(("weight", li, j, p, (hid, n_in if s == nbnlp.X_SRC else hid),
                            weight_slot(li, j, p), bound))
            biases.append(("bias", li, j, 0, (hid,), bias_slot(li, j), bound))
    return out + biases


def num_params(cell: nbnlp.Cell, sizes: Sizes = Sizes()) -> int:
    """Trainable parameters: the segments plus the decoder bias (the tied matrix counted once)."""
    return sum(int(np.prod(s[4])) for s in segments(cell, sizes)) + sizes.ntoken


_ACTIVATION_MODULES = {nbnlp.TANH: nn.Tanh, nbnlp.SIGM: nn.Sigmoid, nbnlp.LEAKY: nn.LeakyReLU}

# proxies whose definition does not carry over to the language model, and why (docs/nbnlp.md,
# "Proxies that do not apply"): scoring refuses them with this reason
NOT_APPLICABLE = {
    "epe_nas": "EPE-NAS groups the samples of the batch by their class label and correlates their "
               "input Jacobians within each class; a language-model sample is a token sequence "
               "with one target word per position, not one class, so the grouping and the score "
               "are undefined (docs/nbnlp.md)",
    "zen": "Zen-NAS measures the response of the feature map that enters an image network's "
           "global average pool and normalises it by the network's BatchNorm variances; the "
           "NB-NLP language model has no global pool and no BatchNorm, so neither term exists "
           "(docs/nbnlp.md)",
    "meco": "MeCo takes, for one input sample, the smallest eigenvalue of the correlation matrix "
            "of each layer's channels over the feature map's positions; one sequence has 70 "
            "positions (time steps) for 600 or 400 channels, so every such matrix has rank at "
            "most 69 and its smallest eigenvalue is 0 up to rounding for every network, and the "
            "authors' per-module code applied as written correlates the 33,278 vocabulary rows "
            "of the logits (a 33,278 x 33,278 eigenproblem, some 9 GB) (docs/nbnlp.md)",
    "swap": "SWAP counts the distinct sign patterns of the ReLU units of convolutional feature "
            "maps (the authors' code reads only nn.ReLU with 4-D input) after N(0, 1) "
            "re-initialisations; the language model has no ReLU, and N(0, 1) weights at fan-in "
            "600 saturate its tanh and sigmoid units and overflow its products over the 70 "
            "recurrent steps (harmless only in ReLU networks, which are positively homogeneous) "
            "(docs/nbnlp.md)",
    "swap_reg": "regularised SWAP is SWAP (not applicable: no ReLU feature maps, N(0, 1) "
                "re-initialisation over 70 recurrent steps) times a size prior calibrated for "
                "NAS-Bench-201 (mu = sigma = 1.5 M parameters), which underflows to 0 at NB-NLP's "
                "13 to 30 M parameters (docs/nbnlp.md)",
    "vkdnw": "VKDNW's Fisher matrix takes one backward pass per output class and the Cholesky "
             "factor of a C x C matrix per output; the language model has 33,278 classes at each "
             "of 70 positions per sequence: 33,278 backward passes and 33,278 x 33,278 factors "
             "(some 9 GB each), out of reach (docs/nbnlp.md)",
    "vkdnw_single": "VKDNW_single orders networks by (vkdnw_dim, vkdnw) and needs vkdnw, whose "
                    "33,278-class Fisher matrix is out of reach (docs/nbnlp.md)",
}


class CellLayer(nn.Module):
    """One layer of the recurrent cell (the benchmark's ``CustomRNN``): runs the cell over the
    time steps of x (B, T, input_size) from zero hidden states; returns h_new_0 at every step
    (B, T, hidden_size)."""

    def __init__(self, cell: nbnlp.Cell, input_size: int, hidden_size: int):
        super().__init__()
        self.cell = cell
        self.input_size, self.hidden_size = input_size, hidden_size
        self.linears = nn.ModuleDict()
        self.activations = nn.ModuleDict()
        for j, (op, ins) in enumerate(zip(cell.ops, cell.inputs)):
            if op == nbnlp.LINEAR:
                for p, s in enumerate(ins):
                    n_in = input_size if s == nbnlp.X_SRC else hidden_size
                    self.linears[f"{j}_{p}"] = nn.Linear(n_in, hidden_size, bias=p == 0)
            elif op in _ACTIVATION_MODULES:
                self.activations[str(j)] = _ACTIVATION_MODULES[op]()

    def step(self, x_t, hidden: list) -> list:
        """One time step: the new hidden states from x_t (B, input_size) and ``hidden``."""
        c = self.cell
        vals = [x_t] + list(hidden) + [None] * (nbnlp.MAX_HIDDEN - c.hidden)
        for j, (op, ins) in enumerate(zip(c.ops, c.inputs)):  # canonical order is topological
            a = [vals[s] for s in ins]
            if op == nbnlp.LINEAR:
                v = self.linears[f"{j}_0"](a[0])
                for p in range(1, len(a)):
                    v = v + self.linears[f"{j}_{p}"](a[p])
            elif op == nbnlp.BLEND:
                v = a[0] * a[1] + (1 - a[0]) * a[2]
            elif op == nbnlp.SUM:
                v = a[0] + a[1]
            elif op == nbnlp.PROD:
                v = a[0] * a[1]
            else:
                v = self.activations[str(j)](a[0])
            vals.append(v)
        return [vals[nbnlp.NODE0 + o] for o in c.outputs]

    def forward(self, x):
        B, T = x.shape[0], x.shape[1]
        hidden = [x.new_zeros(B, self.hidden_size) for _ in range(self.cell.hidden)]
        outs = []
        for t in range(T):
            hidden = self.step(x[:, t], hidden)
            outs.append(hidden[0])
        return torch.stack(outs, 1)


class NBNLPNet(nn.Module):
    """Embedding, ``nlayers`` cell layers, tied decoder (see the module docstring)."""

    def __init__(self, code: int, sizes: Sizes = Sizes()):
        super().__init__()
        from zcfast import _C

        self.code = int(code)
        self.key = int(_C.nbnlp.key(self.code))
        self.cell = nbnlp.cell_of(self.code)
        self.sizes = sizes
        self.encoder = nn.Embedding(sizes.ntoken, sizes.emsize)
        self.embedded = nn.Identity()  # marks the first continuous value (AZ-NAS's F_0)
        self.rnns = nn.ModuleList(CellLayer(self.cell, i, h) for i, h in sizes.layers())
        self.decoder = nn.Linear(sizes.emsize, sizes.ntoken)
        self.decoder.weight = self.encoder.weight  # tied

    def forward_embedded(self, e):
        """Logits (B, ntoken, T) of embedded input e (B, T, emsize)."""
        h = self.embedded(e)
        for rnn in self.rnns:
            h = rnn(h)
        return self.decoder(h).transpose(1, 2)

    def forward(self, x):
        """Logits (B, ntoken, T) of tokens x (B, T)."""
        return self.forward_embedded(self.encoder(x))

    # ---- what the proxies need to know (zcfast/proxies/_common.py) ----------------------------
    def zc_continuous_input(self, x):
        """(e, f): the network's first continuous input for tokens x, the embeddings (B, T,
        emsize), and the function of it that gives the outputs. jacob_cov differentiates with
        respect to e; synflow feeds ones of one sample's shape (1, T, emsize)."""
        return self.encoder(x).detach(), self.forward_embedded

    # AZ-NAS (zcfast/proxies/az_nas.py): the stage features are the embedded input and each
    # layer's outputs, (B, T, C) with channels last (docs/nbnlp.md)
    zc_feature_channels_last = True

    def zc_feature_modules(self) -> list:
        """AZ-NAS's stage features F_0..F_L: the embedded input, then every layer's outputs."""
        return [self.embedded, *self.rnns]

    def zc_arch_key(self) -> int:
        """The modern proxies' stream key (re-initialisation, probes): the network's key folded
        to 32 bits, as its weights' streams (``self.code`` may be a tagged handle of a logged
        run, and isomorphic cells must draw the same numbers)."""
        return stream_code(self.key)

    def zc_not_applicable(self) -> dict:
        """{proxy: why its definition does not carry over to this network}: compute_measures
        refuses them (NOT_APPLICABLE)."""
        return dict(NOT_APPLICABLE)

    def zc_nwot_modules(self) -> list:
        """The units whose input signs are NASWOT's codes: the leaky ReLUs (piecewise linear with
        two regions, as ReLU); tanh and sigmoid have no linear regions. Empty: nwot undefined."""
        return [m for m in self.modules() if isinstance(m, nn.LeakyReLU)]


def build_model(code: int, *, sizes: Sizes = Sizes(), seed: int | None = 0, dtype=torch.float32,
                device=None) -> NBNLPNet:
    """The network of the cell ``code`` in train mode. ``seed=None`` keeps PyTorch's draws (and
    allows ``device='meta'``, for counting parameters); an int draws the benchmark's
    initialisation from the (seed, key, slot) streams."""
    if seed is not None and device is not None and torch.device(device).type == "meta":
        raise ValueError("a meta-device model has no weights to initialise: pass seed=None")
    if device is not None and torch.device(device).type == "meta":
        with torch.device("meta"):
            net = NBNLPNet(code, sizes)
        return net.train()
    net = NBNLPNet(code, sizes)
    if seed is not None:
        init_weights(net, seed)
    return net.to(device=device, dtype=dtype).train()


def flat_weights(cell: nbnlp.Cell, sizes: Sizes, key: int, seed: int, segs=None) -> tuple:
    """(flat float32 buffer, offsets) of the segments of one network, drawn from the streams."""
    from zcfast.ops.init import fill_uniform

    segs = segments(cell, sizes) if segs is None else segs
    lens = [int(np.prod(s[4])) for s in segs]
    offsets = torch.tensor(np.concatenate([[0], np.cumsum(lens)]), dtype=torch.int64)
    flat = torch.empty(int(offsets[-1]), dtype=torch.float32)
    n = len(segs)
    fill_uniform(flat, offsets, torch.full((n,), stream_code(key), dtype=torch.int64),
                 torch.tensor([s[5] for s in segs], dtype=torch.int64),
                 torch.tensor([s[6] for s in segs], dtype=torch.float32), seed)
    return flat, offsets


@torch.no_grad()
def init_weights(net: NBNLPNet, seed: int) -> NBNLPNet:
    """The benchmark's initialisation from the streams (seed, stream_code(net.key), slot)."""
    segs = segments(net.cell, net.sizes)
    flat, offsets = flat_weights(net.cell, net.sizes, net.key, seed, segs)
    for (kind, li, j, p, shape, _, _), a, b in zip(segs, offsets[:-1].tolist(), offsets[1:].tolist()):
        if kind == "embedding":
            t = net.encoder.weight
        elif kind == "weight":
            t = net.rnns[li].linears[f"{j}_{p}"].weight
        else:
            t = net.rnns[li].linears[f"{j}_0"].bias
        t.copy_(flat[a:b].view(shape))
    net.decoder.bias.zero_()
    return net
