"""Sequence accuracy per length and the iteration-head attention metrics.

Positions are indices into the model input ``x = seq[:-1]`` (see data.py): for an input of length L, index 0 is
BoS, 1..L are x_1..x_L, L+1 is EoI and, with chain of thought, L+1+t holds s_t. The position that predicts s_t
is q_t = L + t (t = 1..L; q_1 is EoI itself).

An iteration head (Cabannes et al., arXiv:2406.02128): at q_t, layer 1 attends to EoI (which tells the position
its offset t from the end of the input) and layer 2 attends to x_t (which, with s_{t-1} in the residual stream
at q_t, gives s_t = F(s_{t-1}, x_t)). Metrics, averaged over the queries q_t of every test sequence:

- ``l2_mass_xt``: layer-2 attention probability on x_t; ``l1_mass_eoi``: layer-1 probability on EoI;
- ``l2_peak_xt`` / ``l1_peak_eoi``: thresholded peakiness, the fraction of queries with that probability > 0.5;
- ``uniform_mass``: the mean of 1 / (q_t + 1), what a uniform causal head would put on one key;
  ``l2_mass_ratio`` = l2_mass_xt / uniform_mass.

With several heads per layer the best head of the layer (highest mean mass) is reported.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric


def sequence_correct(logits: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    """(N,) bool: every masked (post-EoI) argmax prediction of the sequence is right."""
    wrong = (logits.argmax(-1) != y) & mask
    return ~wrong.any(dim=1)


def masked_cross_entropy(logits: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    """Mean cross-entropy over the masked target tokens only."""
    return F.cross_entropy(logits[mask], y[mask])


def length_groups(mask: Tensor, max_groups: int = 6) -> list[tuple[Tensor, int]]:
    """Rows of a padded batch grouped by how many input positions they need, as ``(rows, positions)`` pairs.

    A row needs its positions up to its last masked target: a causal model's outputs there do not depend on the
    padding after it, so running each group cut to its own ``positions`` gives the same logits at every masked
    target as the full padded batch, with fewer tokens (a length-balanced mix of L = 1..12 is ~40% padding). At
    most ``max_groups`` groups: each split of the sorted needs is placed where it removes the most padded tokens
    (few, larger matrix products keep the CPU's GEMMs efficient).
    """
    width = mask.shape[1]
    need = width - mask.flip(1).to(torch.int8).argmax(1)  # 1 + index of the last masked target
    values, counts = torch.unique(need, return_counts=True)
    values, counts = values.tolist(), counts.tolist()
    cuts = [len(values)]  # groups end (exclusive) at these indices of ``values``; a group pads to its last value
    while len(cuts) < max_groups:
        best, best_gain, start = None, 0, 0
        for end in sorted(cuts):
            top = values[end - 1]
            for c in range(start + 1, end):  # split [start, end) into [start, c) and [c, end)
                gain = sum(counts[start:c]) * (top - values[c - 1])
                if gain > best_gain:
                    best, best_gain = c, gain
            start = end
        if best is None:
            break
        cuts.append(best)
    groups, start = [], 0
    for end in sorted(cuts):
        lo, hi = values[start], values[end - 1]
        rows = torch.nonzero((need >= lo) & (need <= hi)).flatten()
        groups.append((rows, hi))
        start = end
    return groups


def length_grouped(batch: dict[str, Tensor], max_groups: int = 6) -> list[dict[str, Tensor]]:
    """``batch`` (``x``, ``y``, ``mask``, ...) split into its :func:`length_groups`, each sequence tensor cut to the
    group's positions (per-row tensors such as ``length`` are only indexed)."""
    width = batch["mask"].shape[1]
    out = []
    for rows, positions in length_groups(batch["mask"], max_groups):
        cut = {k: v[rows, :positions] if v.dim() > 1 and v.shape[1] == width else v[rows] for k, v in batch.items()}
        out.append(cut)
    return out


def grouped_masked_cross_entropy(
    net: Callable[[Tensor], Tensor], batch: dict[str, Tensor], max_groups: int = 6
) -> Tensor:
    """:func:`masked_cross_entropy` of ``net(batch["x"])``, computed on :func:`length_grouped` parts of the batch:
    the same value and gradient (up to float summation order) for a causal ``net``, at a fraction of the padded
    batch's cost."""
    loss = batch["x"].new_zeros((), dtype=torch.float32)
    for part in length_grouped(batch, max_groups):
        m = part["mask"]
        loss = loss + F.cross_entropy(net(part["x"])[m], part["y"][m], reduction="sum")
    return loss / batch["mask"].sum()


def iteration_head_queries(lengths: Tensor) -> dict[str, Tensor]:
    """For every sequence (input length L) and t = 1..L: its row, the query q_t = L + t, the key of x_t (= t) and
    of EoI (= L + 1), and t. Flat tensors of equal length (sum of the lengths)."""
    rows = torch.repeat_interleave(torch.arange(len(lengths), device=lengths.device), lengths)
    length = lengths[rows]
    starts = torch.cumsum(lengths, 0) - lengths
    t = torch.arange(len(rows), device=lengths.device) - starts[rows] + 1
    return {"row": rows, "query": length + t, "x_key": t, "eoi_key": length + 1, "t": t}


class SequenceAccuracy(Metric):
    """acc_L per input length L (a sequence counts when all its post-EoI predictions are right), their mean
    ``acc`` over the lengths present among ``averaged`` (``None``: all lengths present), the masked token
    accuracy and the masked cross-entropy."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, n_len: int, averaged: list[int] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n_len = n_len
        self.averaged = None if averaged is None else sorted(int(L) for L in averaged)
        self.add_state("correct", torch.zeros(n_len + 1, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(n_len + 1, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("token_correct", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("token_total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("loss_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: Tensor, y: Tensor, mask: Tensor, lengths: Tensor) -> None:
        ok = sequence_correct(logits, y, mask)
        self.correct += torch.bincount(lengths[ok], minlength=self.n_len + 1)
        self.total += torch.bincount(lengths, minlength=self.n_len + 1)
        self.token_correct += ((logits.argmax(-1) == y) & mask).sum()
        self.token_total += mask.sum()
        self.loss_sum += F.cross_entropy(logits[mask], y[mask], reduction="sum").double()

    def compute(self) -> dict[str, Tensor | dict[int, float]]:
        present = self.total > 0
        per_length = self.correct[present].double() / self.total[present]
        averaged = present.clone()
        if self.averaged is not None:
            keep = torch.zeros_like(present)
            keep[[L for L in self.averaged if L <= self.n_len]] = True
            averaged &= keep
        acc = (self.correct[averaged].double() / self.total[averaged]).mean()
        return {
            "acc": acc,
            "per_length": {int(L): float(a) for L, a in zip(torch.nonzero(present).flatten(), per_length)},
            "token_acc": self.token_correct.double() / self.token_total.clamp_min(1),
            "loss": self.loss_sum / self.token_total.clamp_min(1),
        }


class IterationHeadStats(Metric):
    """Accumulates the iteration-head metrics (module docstring) per head and per step t = 1..n_len from the
    attention maps of the first two layers."""

    full_state_update = False

    def __init__(self, n_len: int, n_heads: int = 1, threshold: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n_len, self.threshold = n_len, threshold
        for name in ("l1_mass_eoi", "l2_mass_xt", "l1_peak_eoi", "l2_peak_xt"):
            self.add_state(name, torch.zeros(n_heads, n_len + 1, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("uniform", torch.zeros(n_len + 1, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(n_len + 1, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, layer1: Tensor, layer2: Tensor, lengths: Tensor) -> None:
        """``layer1``, ``layer2``: attention probabilities (B, heads, T, T); ``lengths`` (B,) input lengths."""
        q = iteration_head_queries(lengths)
        eoi = layer1[q["row"], :, q["query"], q["eoi_key"]].double()  # (queries, heads)
        xt = layer2[q["row"], :, q["query"], q["x_key"]].double()
        t = q["t"]
        for name, values in (
            ("l1_mass_eoi", eoi),
            ("l2_mass_xt", xt),
            ("l1_peak_eoi", (eoi > self.threshold).double()),
            ("l2_peak_xt", (xt > self.threshold).double()),
        ):
            getattr(self, name).index_add_(1, t, values.T)
        self.uniform.index_add_(0, t, 1.0 / (q["query"] + 1).double())
        self.count.index_add_(0, t, torch.ones_like(t, dtype=torch.float64))

    def compute(self) -> dict[str, Tensor]:
        """Scalars (best head per layer) and ``per_step/<name>`` (n_len,) curves over t (NaN where no query)."""
        n = self.count.sum().clamp_min(1)
        out: dict[str, Tensor] = {}
        for _layer, mass, peak in ((1, "l1_mass_eoi", "l1_peak_eoi"), (2, "l2_mass_xt", "l2_peak_xt")):
            per_head = getattr(self, mass).sum(1) / n
            head = int(per_head.argmax())
            out[mass] = per_head[head]
            out[peak] = getattr(self, peak)[head].sum() / n
            steps = self.count[1:]
            out[f"per_step/{mass}"] = getattr(self, mass)[head, 1:] / steps
        out["uniform_mass"] = self.uniform.sum() / n
        out["l2_mass_ratio"] = out["l2_mass_xt"] / out["uniform_mass"]
        return out
