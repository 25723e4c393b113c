"""Neural-collapse evaluation: NC1-NC4 per layer on clean, PGD-perturbed and random-noise training features,
and nearest-class-centre (NCC) accuracy on perturbed test inputs classified by the clean class means.

Exact under DDP: the training examples measured are the first ``max_train_samples`` of the training split (a
fixed set, whatever the batch size), sharded over the ranks without duplicates; the statistics are summed over
ranks (torchmetrics states); every random draw (the noise, PGD's random start) is keyed by the example's index in
its split, not by the rank or the batch, so one process and N processes give the same numbers on the same
weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from bench.attacks.factory import (
    attack_config,
    attack_enabled,
    attack_norm,
    build_attack,
    eps_list,
    random_noise,
    run_attack,
)
from bench.harness.errors import BenchError
from bench.metrics.neural_collapse import ClassFeatureStatistics, NearestClassCenter, alignment, collapse_metrics, nc1

KINDS = ("clean", "pgd", "noise")


class FeatureRecorder:
    """Forward hooks on the network's hidden layers; ``layers[-1]`` is the penultimate feature (the input of
    the classifier)."""

    def __init__(self, net: nn.Module) -> None:
        self.modules = net.hidden_layers()
        self.outputs: list[Tensor] = []
        self.handles = [m.register_forward_hook(self._hook) for m in self.modules]

    def _hook(self, module: nn.Module, inp: Any, out: Tensor) -> None:
        # convolutional feature maps are averaged over space (one value per channel): NC statistics need a
        # d x d covariance, and d = channels x height x width would not fit in memory
        self.outputs.append(out.mean(dim=(2, 3)) if out.ndim == 4 else out)

    def __call__(self, net: nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        self.outputs = []
        logits = net(x)
        return logits, list(self.outputs)

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def _update(stats: list[ClassFeatureStatistics], feats: list[Tensor], y: Tensor, num_classes: int) -> None:
    """Add one batch of per-layer features to ``stats`` (created on the first batch, one per layer)."""
    if not stats:
        stats.extend(ClassFeatureStatistics(num_classes, f.flatten(1).shape[1]).to(f.device) for f in feats)
    for st, f in zip(stats, feats):
        st.update(f, y)


class NeuralCollapseCallback(L.Callback):
    """Computes the metrics at test time (they go into the record) and every ``every_n_epochs`` during training
    (logged as ``nc_train/...`` to follow the terminal phase).

    Metric names: ``nc/init/clean/nc1`` (before training, network in eval mode), ``nc/<kind>/<metric>`` for the
    last hidden layer and ``nc/layer<k>/<kind>/<metric>`` for hidden layer k (1-based); kind in clean / pgd /
    noise. ``nc/pgd/align_cos``: alignment of the perturbed simplex with the clean one. ``nc/test_pgd/ncc_acc``
    and ``nc/test_pgd/net_acc``: NCC and network accuracy on PGD test inputs (the NCC uses the clean training
    means). ``nc/train_samples``: how many training examples the metrics used.

    Args:
        attack: the attack config (PGD; a disabled attack, ``attack=none``, means PGD-10 l_inf at eps 0.1).
        every_n_epochs: also evaluate during training every n epochs (0: only at test).
        max_train_samples: measure on the first n training examples only (``None``: all of them).
        seed: seed of the per-example random draws (noise, PGD random start; :mod:`bench.attacks.noise`).
    """

    def __init__(
        self, attack: Mapping[str, Any], every_n_epochs: int = 0, max_train_samples: int | None = None, seed: int = 0
    ) -> None:
        self.attack_cfg = attack_config(attack)
        if not attack_enabled(self.attack_cfg):
            self.attack_cfg = attack_config({"name": "pgd_linf", "eps": [0.1]})
        self.eps = eps_list(self.attack_cfg["eps"])[0]
        self.norm = attack_norm(self.attack_cfg)
        self.every_n_epochs = every_n_epochs
        if max_train_samples is not None and int(max_train_samples) < 1:
            raise BenchError(
                f"callbacks.neural_collapse.max_train_samples must be >= 1 or null, got {max_train_samples}"
            )
        self.max_train_samples = None if max_train_samples is None else int(max_train_samples)
        self.seed = int(seed)
        self.init: dict[str, float] = {}

    # -- inputs ----------------------------------------------------------------------------------------------
    def _batches(self, trainer: L.Trainer, split: str, limit: int | None) -> list[tuple[Tensor, Tensor, Tensor]]:
        """This rank's share of the first ``limit`` examples of ``split`` as (x, y, index) batches: indices
        rank, rank + world, ... (disjoint, complete over the ranks), in the datamodule's eval batch size."""
        dm = trainer.datamodule
        data = dm.split(split)
        n = len(data["y"]) if limit is None else min(limit, len(data["y"]))
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        local = torch.arange(rank, n, world)
        bs = dm.eval_batch_size or max(len(local), 1)
        return [(data["x"][idx], data["y"][idx], idx) for idx in local.split(bs)]

    def _perturb(self, kind: str, net: nn.Module, x: Tensor, y: Tensor, index: Tensor) -> Tensor:
        """Clean, PGD or same-radius uniform noise inputs; the random draws are keyed by the example index."""
        if kind == "clean":
            return x
        if kind == "noise":
            return random_noise(x, self.eps, self.norm, index=index, seed=self.seed)
        with torch.enable_grad():
            return run_attack(self.pgd, x, y, index=index)

    # -- metrics ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        net = pl_module.net
        was_training = net.training
        net.eval()
        dm = trainer.datamodule
        nc, dev = dm.num_classes, pl_module.device
        self.pgd = build_attack(self.attack_cfg, net, self.eps, num_classes=nc, seed=self.seed)
        rec = FeatureRecorder(net)
        try:
            stats: dict[str, list[ClassFeatureStatistics]] = {kind: [] for kind in KINDS}
            # one perturbed copy per kind and example, reused by NC1-3 and by NC4 / NCC below
            inputs: dict[str, list[Tensor]] = {kind: [] for kind in KINDS}
            batches = [(x.to(dev), y.to(dev), i) for x, y, i in self._batches(trainer, "train", self.max_train_samples)]
            for x, y, i in batches:
                for kind in KINDS:
                    xk = self._perturb(kind, net, x, y, i)
                    inputs[kind].append(xk)
                    _, feats = rec(net, xk)
                    _update(stats[kind], feats, y, nc)
            computed = {k: [s.compute() for s in v] for k, v in stats.items()}
            out: dict[str, float] = {"nc/train_samples": float(computed["clean"][-1]["count"])}
            n_layers = len(computed["clean"])
            for kind in KINDS:
                for li, st in enumerate(computed[kind]):
                    is_last = li == n_layers - 1
                    prefix = f"nc/{kind}" if is_last else f"nc/layer{li + 1}/{kind}"
                    if is_last:
                        for k, v in collapse_metrics(st, net.classifier.weight).items():
                            out[f"{prefix}/{k}"] = v
                    else:
                        out[f"{prefix}/nc1"] = nc1(st)
                    if kind != "clean":
                        out[f"{prefix}/align_cos"] = alignment(computed["clean"][li], st)
            # NC4 and NCC accuracy on the same (perturbed) training inputs, then on PGD test inputs, with the
            # clean class means
            means = computed["clean"][-1]["means"]
            for kind in KINDS:
                ncc = NearestClassCenter(means).to(dev)
                for (_, y, _), xk in zip(batches, inputs[kind]):
                    logits, feats = rec(net, xk)
                    ncc.update(feats[-1], logits.argmax(1), y)
                r = ncc.compute()
                out[f"nc/{kind}/nc4"] = r["nc4"]
                out[f"nc/{kind}/ncc_acc"] = r["ncc_acc"]
                out[f"nc/{kind}/net_acc"] = r["net_acc"]
            ncc = NearestClassCenter(means).to(dev)
            for x, y, i in self._batches(trainer, "test", None):
                x, y = x.to(dev), y.to(dev)
                logits, feats = rec(net, self._perturb("pgd", net, x, y, i))
                ncc.update(feats[-1], logits.argmax(1), y)
            r = ncc.compute()
            out["nc/test_pgd/ncc_acc"], out["nc/test_pgd/net_acc"] = r["ncc_acc"], r["net_acc"]
        finally:
            rec.close()
            net.train(was_training)
        return out

    @torch.no_grad()
    def clean_nc1(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """NC1 of clean training features per hidden layer, network in eval mode (batch norm would otherwise
        use batch statistics), on the same examples as :meth:`evaluate` (``nc/init/...`` before training)."""
        net = pl_module.net
        was_training = net.training
        net.eval()
        rec = FeatureRecorder(net)
        stats: list[ClassFeatureStatistics] = []
        try:
            for x, y, _ in self._batches(trainer, "train", self.max_train_samples):
                _, feats = rec(net, x.to(pl_module.device))
                _update(stats, feats, y.to(pl_module.device), trainer.datamodule.num_classes)
        finally:
            rec.close()
            net.train(was_training)
        n = len(stats)
        return {
            ("nc/init/clean/nc1" if i == n - 1 else f"nc/layer{i + 1}/init/clean/nc1"): nc1(st.compute())
            for i, st in enumerate(stats)
        }

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # "collapse" is measured against the start: keep NC1 at initialisation (restored from the checkpoint
        # when a run resumes, so it is always the value before the first step)
        if not self.init:
            self.init = self.clean_nc1(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"init": dict(self.init)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.init = dict(state_dict.get("init", {}))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        e = trainer.current_epoch + 1
        if self.every_n_epochs and e % self.every_n_epochs == 0:
            m = self.evaluate(trainer, pl_module)
            keep = ("nc/clean/nc1", "nc/pgd/nc1", "nc/noise/nc1", "nc/clean/nc4", "nc/pgd/ncc_acc")
            logged = {k.replace("nc/", "nc_train/", 1): v for k, v in m.items() if k in keep}
            pl_module.log_dict(logged, sync_dist=False)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.log_dict({**self.init, **self.evaluate(trainer, pl_module)}, sync_dist=False)
