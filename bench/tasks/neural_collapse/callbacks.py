"""Neural-collapse evaluation: NC1-NC4 per layer on clean, PGD-perturbed and random-noise training features,
and nearest-class-centre (NCC) accuracy on perturbed test inputs classified by the clean class means."""

from __future__ import annotations

from typing import Any, Mapping

import lightning as L
import torch
from torch import Tensor, nn

from bench.attacks.factory import attack_norm, build_attack, random_noise
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

    Metric names: ``nc/init/clean/nc1`` (before training), ``nc/<kind>/<metric>`` for the last hidden layer and
    ``nc/layer<k>/<kind>/<metric>`` for hidden
    layer k (1-based); kind in clean / pgd / noise. ``nc/pgd/align_cos``: alignment of the perturbed simplex with
    the clean one. ``nc/test_pgd/ncc_acc`` and ``nc/test_pgd/net_acc``: NCC and network accuracy on PGD test
    inputs (the NCC uses the clean training means).
    """

    def __init__(self, attack: Mapping[str, Any], every_n_epochs: int = 0, max_train_samples: int | None = None) -> None:
        self.attack_cfg = dict(attack)
        if self.attack_cfg.get("name", "none") == "none":
            self.attack_cfg = {"name": "pgd_linf", "eps": [0.1], "steps": 10, "step_size": 0.25, "random_start": True}
        eps = self.attack_cfg["eps"]
        self.eps = float(eps[0] if hasattr(eps, "__getitem__") else eps)
        self.every_n_epochs = every_n_epochs
        self.max_train_samples = max_train_samples
        self.init: dict[str, float] = {}

    def _perturb(self, kind: str, net: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator) -> Tensor:
        if kind == "clean":
            return x
        if kind == "noise":
            return random_noise(x, self.eps, attack_norm(self.attack_cfg), gen)
        with torch.enable_grad():
            return self.pgd(x, y)

    def _train_batches(self, trainer: L.Trainer, pl_module: L.LightningModule) -> list[tuple[Tensor, Tensor]]:
        """The training inputs every NC metric is computed on (at most ``max_train_samples``), on the device."""
        out, seen = [], 0
        for batch in trainer.datamodule.train_eval_dataloader():
            if self.max_train_samples and seen >= self.max_train_samples:
                break
            out.append((batch["x"].to(pl_module.device), batch["y"].to(pl_module.device)))
            seen += len(batch["y"])
        return out

    @torch.no_grad()
    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        net = pl_module.net
        was_training = net.training
        net.eval()
        dm = trainer.datamodule
        nc, dev = dm.num_classes, pl_module.device
        self.pgd = build_attack(self.attack_cfg, net, self.eps, num_classes=nc)
        rec = FeatureRecorder(net)
        gen = torch.Generator().manual_seed(0)
        try:
            stats: dict[str, list[ClassFeatureStatistics]] = {kind: [] for kind in KINDS}
            batches = self._train_batches(trainer, pl_module)
            for x, y in batches:
                for kind in KINDS:
                    _, feats = rec(net, self._perturb(kind, net, x, y, gen))
                    _update(stats[kind], feats, y, nc)
            computed = {k: [s.compute() for s in v] for k, v in stats.items()}
            out: dict[str, float] = {}
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
            # NC4 and NCC accuracy on the training inputs, then on PGD test inputs, with the clean means
            means = computed["clean"][-1]["means"]
            for kind in KINDS:
                ncc = NearestClassCenter(means).to(dev)
                for x, y in batches:
                    logits, feats = rec(net, self._perturb(kind, net, x, y, gen))
                    ncc.update(feats[-1], logits.argmax(1), y)
                r = ncc.compute()
                out[f"nc/{kind}/nc4"] = r["nc4"]
                out[f"nc/{kind}/ncc_acc"] = r["ncc_acc"]
                out[f"nc/{kind}/net_acc"] = r["net_acc"]
            ncc = NearestClassCenter(means).to(dev)
            for batch in dm.test_dataloader():
                x, y = batch["x"].to(dev), batch["y"].to(dev)
                logits, feats = rec(net, self._perturb("pgd", net, x, y, gen))
                ncc.update(feats[-1], logits.argmax(1), y)
            r = ncc.compute()
            out["nc/test_pgd/ncc_acc"], out["nc/test_pgd/net_acc"] = r["ncc_acc"], r["net_acc"]
        finally:
            rec.close()
            net.train(was_training)
        return out

    @torch.no_grad()
    def clean_nc1(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """NC1 of clean training features per hidden layer (``nc/init/...`` before training)."""
        net = pl_module.net
        rec = FeatureRecorder(net)
        stats: list[ClassFeatureStatistics] = []
        try:
            for x, y in self._train_batches(trainer, pl_module):
                _, feats = rec(net, x)
                _update(stats, feats, y, trainer.datamodule.num_classes)
        finally:
            rec.close()
        n = len(stats)
        return {("nc/init/clean/nc1" if i == n - 1 else f"nc/layer{i + 1}/init/clean/nc1"): nc1(st.compute()) for i, st in enumerate(stats)}

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
            pl_module.log_dict({k.replace("nc/", "nc_train/", 1): v for k, v in m.items() if k in keep}, sync_dist=False)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.log_dict({**self.init, **self.evaluate(trainer, pl_module)}, sync_dist=False)
