"""Per-example pruning scores (higher = harder = kept first). Pure functions of networks, tensors and seeds.

EL2N and GraNd (Paul et al. 2021) are read from early-training weights; Forgetting (Toneva et al. 2019) and
Dynamic Uncertainty (He et al. 2023) from the per-epoch true-class probabilities of a full training run; CoreSet
(Sener & Savarese 2018) is the order of greedy k-center selection on embeddings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

SCORES = ("random", "el2n", "grand", "forgetting", "dynamic_uncertainty", "coreset")


@torch.no_grad()
def predict_proba(net: nn.Module, x: Tensor, batch_size: int = 4096) -> Tensor:
    """Softmax outputs of ``net`` (in eval mode) on ``x``, in chunks."""
    net.eval()
    return torch.cat([F.softmax(net(x[i : i + batch_size]), dim=1) for i in range(0, len(x), batch_size)])


def el2n(probs: Tensor, y: Tensor) -> Tensor:
    """||softmax(f(x)) - onehot(y)||_2 per example, from (N, C) probabilities."""
    return (probs - F.one_hot(y, probs.shape[1]).to(probs.dtype)).norm(dim=1)


def grand(net: nn.Module, x: Tensor, y: Tensor, chunk: int = 512) -> Tensor:
    """||grad_theta CE(f(x_i), y_i)||_2 over every trainable parameter, one per example, computed with
    ``torch.func.vmap`` over per-example gradients (``chunk`` examples at a time). Eval mode: batch-norm layers
    use their running statistics, so an example's gradient does not depend on the others in its chunk."""
    net.eval()
    params = {k: v.detach() for k, v in net.named_parameters() if v.requires_grad}
    frozen = {k: v.detach() for k, v in net.named_parameters() if not v.requires_grad}
    buffers = {k: v.detach() for k, v in net.named_buffers()}

    def loss(p: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        out = functional_call(net, {**p, **frozen, **buffers}, (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))
    norms = []
    for i in range(0, len(x), chunk):
        g = per_example(params, x[i : i + chunk], y[i : i + chunk])
        norms.append(torch.stack([v.flatten(1).pow(2).sum(1) for v in g.values()]).sum(0).sqrt())
    return torch.cat(norms) if norms else torch.zeros(0)


def forgetting(correct: Tensor) -> Tensor:
    """Forgetting events per example from ``correct``: (T, N) booleans, the prediction's correctness after each of
    T consecutive evaluations (epochs). An event is a correct -> incorrect flip between consecutive evaluations;
    the state before the first one counts as incorrect (nothing is learned before training), so no event precedes
    it. Examples never classified correctly count as forgotten more often than any learned one (T + 1 events,
    Toneva et al.'s "infinitely often"), so they rank hardest."""
    c = correct.bool()
    flips = (c[:-1] & ~c[1:]).sum(0).to(torch.float32)
    return torch.where(c.any(0), flips, torch.full_like(flips, float(c.shape[0] + 1)))


def dynamic_uncertainty(true_prob: Tensor, window: int = 10) -> Tensor:
    """Mean over the sliding windows of ``window`` consecutive epochs of the (sample) std of the true-class
    probability within the window; ``true_prob`` is (T, N). A run shorter than ``window`` epochs uses one window
    of all of them."""
    t = true_prob.shape[0]
    if t < 2:
        return torch.zeros(true_prob.shape[1])
    w = min(max(2, int(window)), t)
    windows = true_prob.unfold(0, w, 1)  # (T - w + 1, N, w)
    return windows.std(dim=2).mean(0)


def k_center_order(emb: Tensor) -> Tensor:
    """Indices of ``emb`` (N, D) in greedy k-center order: the first is the point nearest the mean embedding (as in
    the DRoP reference code), each next one the point farthest from all chosen so far (ties: lowest index). The
    first k entries are the greedy k-center set for every k."""
    n = emb.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    emb = emb.double()
    first = int((emb - emb.mean(0)).norm(dim=1).argmin())
    order = torch.empty(n, dtype=torch.long)
    order[0] = first
    min_d = (emb - emb[first]).norm(dim=1)
    min_d[first] = -1.0
    for i in range(1, n):
        nxt = int(min_d.argmax())
        order[i] = nxt
        min_d = torch.minimum(min_d, (emb - emb[nxt]).norm(dim=1))
        min_d[nxt] = -1.0  # chosen points stay at -1 (the minimum keeps it)
    return order


def rank_score(order: Tensor) -> Tensor:
    """A score from an order: the first element scores highest (n), the last 1."""
    n = len(order)
    score = torch.empty(n, dtype=torch.float32)
    score[order] = torch.arange(n, 0, -1, dtype=torch.float32)
    return score


def coreset_scores(emb: Tensor, y: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """(global, within-class) k-center rank scores: ``global`` orders all examples together (the score-implied
    selection of dN centres); ``within-class`` orders each class on its own (CoreSet + DRoP picks n_k centres of
    class k)."""
    global_score = rank_score(k_center_order(emb))
    class_score = torch.zeros(len(y))
    for k in range(num_classes):
        idx = torch.nonzero(y == k).flatten()
        if len(idx):
            class_score[idx] = rank_score(k_center_order(emb[idx]))
    return global_score, class_score


@torch.no_grad()
def embeddings(net: nn.Module, x: Tensor, batch_size: int = 4096) -> Tensor:
    """Penultimate features (``net.features``) or, for a network without that split, its logits."""
    net.eval()
    f = net.features if hasattr(net, "features") else net
    return torch.cat([f(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]).flatten(1)
