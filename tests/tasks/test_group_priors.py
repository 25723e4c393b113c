"""group_priors: smoke runs of every method, the GAP / GroupDRO / DFR building blocks on constructed cases, the
data modules (generated, colored digits, WILDS layout on a tiny folder), bad input and the claims' logic."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.harness.claims import RecordSet
from bench.harness.errors import BenchError
from bench.tasks.group_priors.data import upsample
from bench.tasks.group_priors.dfr import AveragedLogisticHead, balanced_subset
from bench.tasks.group_priors.module import (
    GAPModule,
    GroupDROModule,
    group_dro_weights,
    group_mean_losses,
    tempered_context_probs,
)

METHODS = ["erm", "dfr", "group_dro", "jtt", "gap_last_layer", "gap_all_layers"]


# -- smoke runs ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_smoke_every_method(run_bench, method):
    rec = run_bench(["task=group_priors", "profile=smoke", f"method={method}"])
    m = rec["metrics"]
    assert rec["label"] == method
    wga, acc, adj = m["test/worst_group_acc"], m["test/acc"], m["test/adjusted_group_acc"]
    assert 0.0 <= wga <= adj <= 1.0 and 0.0 <= acc <= 1.0
    # the generated test split is group-balanced: 2000 examples, 500 per group
    assert [m[f"test/group_count/{g}"] for g in range(4)] == [500.0] * 4
    assert wga == pytest.approx(min(m[f"test/group_acc/{g}"] for g in range(4)))
    assert adj == pytest.approx(acc)  # balanced groups: group mean = overall accuracy
    assert m["erm/train/loss"] is not None and math.isfinite(m["erm/train/loss"])
    assert any(k.startswith("select/val_") for k in m) == (method != "erm")  # ERM: the last epoch, no selection
    if method == "dfr":
        assert m["select/C"] in (0.1, 1.0)
    else:
        assert 1 <= m["select/epoch"] <= 3
    if method.startswith("gap"):
        assert m["select/prior_precision"] in (50.0, 5.0)
    if method == "group_dro":
        assert sum(m[f"group_dro/weight/{g}"] for g in range(4)) == pytest.approx(1.0)
    if method == "jtt":
        assert m["jtt/error_set_size"] == pytest.approx(m["jtt/error_set_fraction"] * 3000)


def test_erm_stage_is_cached_and_reused(run_bench, tmp_path):
    first = run_bench(["task=group_priors", "profile=smoke", "method=erm"])
    second = run_bench(["task=group_priors", "profile=smoke", "method=dfr"])
    caches = list((tmp_path / "runs" / "cache" / "group_priors").glob("erm-*"))
    assert len(caches) == 1 and (caches[0] / "result.pt").is_file()
    run_dir = tmp_path / "runs" / "group_priors" / second["run_id"]
    assert not (run_dir / "stages" / "erm").exists()  # not retrained
    assert {k: v for k, v in first["metrics"].items() if k.startswith("erm/")} == {
        k: v for k, v in second["metrics"].items() if k.startswith("erm/")
    }
    # a fresh work_dir (ERM retrained) gives the same numbers as the run that reused the cache
    again = run_bench(["task=group_priors", "profile=smoke", "method=dfr", f"work_dir={tmp_path / 'other'}"])
    assert again["metrics"]["test/worst_group_acc"] == second["metrics"]["test/worst_group_acc"]
    # the second stage's seed does not enter the ERM stage: seed=1 with erm_seed=0 reuses it
    run_bench(["task=group_priors", "profile=smoke", "method=dfr", "seed=1", "erm_seed=0"])
    assert len(list((tmp_path / "runs" / "cache" / "group_priors").glob("erm-*"))) == 1
    # every setting that changes the ERM numbers misses the cache (the old hand-built key left threads out)
    for changed in (["num_threads=2"], ["erm.max_epochs=2"], ["trainer.precision=64-true"]):
        run_bench(["task=group_priors", "profile=smoke", "method=erm", *changed])
    assert len(list((tmp_path / "runs" / "cache" / "group_priors").glob("erm-*"))) == 4


def test_colored_digits_smoke(run_bench):
    rec = run_bench(["task=group_priors", "profile=smoke", "method=gap_last_layer", "data=colored_digits"])
    m = rec["metrics"]
    counts = [m[f"test/group_count/{g}"] for g in range(4)]
    assert min(counts) > 0 and max(counts) - min(counts) <= 2  # tints balanced within each class
    assert 0.0 <= m["test/worst_group_acc"] <= m["test/acc"] <= 1.0


# -- GroupDRO ------------------------------------------------------------------------------------------------------
def test_group_dro_weights_move_to_worst_group():
    q = torch.full((4,), 0.25)
    losses = torch.tensor([0.1, 0.3, 1.5, 0.2])
    present = torch.tensor([True, True, True, True])
    history = [q]
    for _ in range(20):
        q = group_dro_weights(q, losses, present, eta=0.1)
        history.append(q)
    assert q.sum() == pytest.approx(1.0)
    assert int(q.argmax()) == 2 and q[2] > 0.8
    assert all(b[2] > a[2] for a, b in zip(history, history[1:]))  # monotone toward the worst group
    # hand-computed single step: q_g exp(eta L_g) / sum
    one = group_dro_weights(torch.full((4,), 0.25), losses, present, eta=0.1)
    expected = torch.exp(0.1 * losses) / torch.exp(0.1 * losses).sum()
    assert torch.allclose(one, expected)
    # an absent group keeps its weight up to renormalisation
    absent = group_dro_weights(torch.full((4,), 0.25), losses, torch.tensor([True, True, False, True]), eta=0.1)
    assert absent[2] < one[2]


def test_group_dro_module_upweights_the_group_it_fits_worst():
    torch.manual_seed(0)
    # groups 0/1 are easy (label = sign of x0), group 2's labels are flipped: a linear model fits it worst
    x = torch.randn(300, 2)
    g = torch.arange(300) % 3
    y = (x[:, 0] > 0).long()
    y[g == 2] = 1 - y[g == 2]
    module = GroupDROModule(nn.Linear(2, 2), optimizer=None, num_groups=3, eta=0.05)
    with torch.no_grad():
        module.net.weight.copy_(torch.tensor([[-3.0, 0.0], [3.0, 0.0]]))
        module.net.bias.zero_()
    for _ in range(10):
        module.training_loss({"x": x, "y": y, "group": g})
    w = module.group_weights
    assert int(w.argmax()) == 2 and w[2] > 1 / 3
    losses, present = group_mean_losses(F.cross_entropy(module.net(x), y, reduction="none"), g, 3)
    assert present.all() and int(losses.argmax()) == 2


# -- GAP -----------------------------------------------------------------------------------------------------------
def test_context_sampler_matches_tempered_group_frequencies():
    counts = [300, 60, 30, 10]
    groups = torch.cat([torch.full((n,), i) for i, n in enumerate(counts)])
    N, s = len(groups), 1.5
    probs = tempered_context_probs(groups, 4, s)
    # per example: proportional to (N / n_g)^s
    per_example = torch.tensor([(N / n) ** s for n in counts])
    assert torch.allclose(probs[groups == 1][0] / probs[groups == 0][0], per_example[1] / per_example[0], rtol=1e-5)
    expected = torch.tensor([n * (N / n) ** s for n in counts])
    expected = expected / expected.sum()
    draws = 200_000
    gen = torch.Generator().manual_seed(0)
    sampled = groups[torch.multinomial(probs, draws, replacement=True, generator=gen)]
    freq = torch.bincount(sampled, minlength=4).double() / draws
    se = torch.sqrt(expected * (1 - expected) / draws)
    assert torch.all((freq - expected).abs() <= 4 * se), (freq, expected)
    # s = 0 is uniform over examples; s = 1 balances the groups
    assert torch.allclose(tempered_context_probs(groups, 4, 0.0), torch.full((N,), 1 / N))
    balanced = torch.zeros(4, dtype=torch.float64).index_add(0, groups, tempered_context_probs(groups, 4, 1.0).double())
    assert torch.allclose(balanced, torch.full((4,), 0.25, dtype=torch.float64), atol=1e-5)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
        self.classifier = nn.Linear(4, 2)

    def forward(self, x):
        return self.classifier(self.features(x))


@pytest.mark.parametrize("rho", [0.0, 0.3])
def test_gap_objective_matches_hand_computation(rho):
    torch.manual_seed(1)
    net = _Net()
    ctx_x, ctx_y = torch.randn(1, 3).repeat(8, 1), torch.tensor([1] * 8)  # one example: L_C is deterministic
    context = {"x": ctx_x, "y": ctx_y, "group": torch.zeros(8, dtype=torch.long)}
    tau, pp, n_train = 15.0, 500.0, 40
    module = GAPModule(
        net,
        context=context,
        num_groups=1,
        num_train=n_train,
        tau=tau,
        rho=rho,
        s=4.0,
        prior_precision=pp,
        context_size=5,
        last_layer_only=True,
    )
    w0, b0 = net.classifier.weight.detach().clone(), net.classifier.bias.detach().clone()
    with torch.no_grad():  # move theta away from theta_0 so the prior term is non-zero
        net.classifier.weight.add_(0.1)
        net.classifier.bias.sub_(0.2)
    batch = {"x": torch.randn(6, 3), "y": torch.tensor([0, 1, 0, 1, 1, 0])}
    loss = module.training_loss(batch)

    h, hc = net.features(batch["x"]).detach(), net.features(ctx_x[:1]).detach()
    W, b = net.classifier.weight.detach(), net.classifier.bias.detach()

    def ctx_loss(W_, b_):
        return F.cross_entropy(hc @ W_.T + b_, ctx_y[:1])

    if rho > 0:
        gW, gb = torch.func.grad(ctx_loss, argnums=(0, 1))(W, b)
        norm = torch.sqrt((gW**2).sum() + (gb**2).sum())
        lc = ctx_loss(W + rho * gW / norm, b + rho * gb / norm)
    else:
        lc = ctx_loss(W, b)
    prior = pp * (((W - w0) ** 2).sum() + ((b - b0) ** 2).sum()) / (2 * n_train)
    expected = F.cross_entropy(h @ W.T + b, batch["y"]) + tau / 6 * lc + prior
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # last layer only: features get no gradient, the head does
    loss.backward()
    assert all(p.grad is None for p in net.features.parameters())
    assert net.classifier.weight.grad is not None


# -- DFR -----------------------------------------------------------------------------------------------------------
def test_dfr_on_separable_features_reaches_full_worst_group_accuracy():
    rng = np.random.default_rng(0)

    def features(n_per_group: list[int]):
        ys, gs, fs = [], [], []
        for g, n in enumerate(n_per_group):
            y, a = g // 2, g % 2
            core = (2 * y - 1) * (1.0 + rng.uniform(0, 1, n))  # separable by sign, margin 1
            spurious = (2 * a - 1) * 3.0 + 0.1 * rng.standard_normal(n)  # the attribute, clean
            fs.append(np.column_stack([core, spurious, rng.standard_normal((n, 6))]))
            ys.append(np.full(n, y))
            gs.append(np.full(n, g))
        return np.concatenate(fs), np.concatenate(ys), np.concatenate(gs)

    f, y, g = features([200, 10, 10, 200])  # spuriously correlated: minority groups 1, 2
    head = AveragedLogisticHead(C=1.0, num_subsets=5).fit(f, y, g, num_classes=2, seed=0)
    ft, yt, gt = features([300, 300, 300, 300])
    pred = head.logits(ft).argmax(1)
    worst = min((pred[gt == k] == yt[gt == k]).mean() for k in range(4))
    assert worst == 1.0
    # the head folded into an nn.Linear gives the same logits
    layer = head.as_linear()
    torch_logits = layer(torch.as_tensor(ft, dtype=torch.float32)).detach().numpy()
    assert np.allclose(torch_logits, head.logits(ft), atol=1e-3)
    # balanced subsets: min_g n_g per group
    idx = balanced_subset(g, np.random.default_rng(1))
    assert np.bincount(g[idx]).tolist() == [10, 10, 10, 10]


def test_jtt_upsampling_repeats_the_error_set():
    split = {"x": torch.arange(5.0)[:, None], "y": torch.zeros(5, dtype=torch.long)}
    out = upsample(split, torch.tensor([False, True, False, False, True]), factor=3)
    assert sorted(out["x"].flatten().tolist()) == [0, 1, 1, 1, 2, 3, 4, 4, 4]


# -- data ----------------------------------------------------------------------------------------------------------
def test_generated_data_groups_and_correlation():
    from bench.data.spurious import SpuriousFeaturesDataModule

    dm = SpuriousFeaturesDataModule(n_train=2000, n_val=400, n_test=1000, spurious_prob=0.9, seed=3)
    dm.setup()
    tr, va, te = (dm.splits[k] for k in ("train", "val", "test"))
    assert torch.bincount(tr["group"], minlength=4).tolist() == [900, 100, 100, 900]
    assert torch.bincount(va["group"], minlength=4).tolist() == [100, 100, 100, 100]
    assert torch.bincount(te["group"], minlength=4).tolist() == [250] * 4
    # the spurious coordinate carries a, the core coordinate carries y
    a = tr["group"] % 2
    assert ((tr["x"][:, 1] > 0).long() == a).float().mean() > 0.99
    assert ((tr["x"][:, 0] > 0).long() == tr["y"]).float().mean() > 0.9
    assert tr["x"].shape == (2000, 22)


def test_colored_digits_tints():
    from bench.data.colored_digits import ColoredDigitsDataModule

    dm = ColoredDigitsDataModule(task="digits", num_tints=2, spurious_prob=0.9, seed=0)
    dm.setup()
    assert dm.num_groups == 20 and dm.splits["train"]["x"].shape[1:] == (3, 8, 8)
    tr, te = dm.splits["train"], dm.splits["test"]
    tint = tr["group"] % 2
    assert (tint == tr["y"] % 2).float().mean().item() == pytest.approx(0.9, abs=0.04)
    counts = torch.bincount(te["group"], minlength=20).view(10, 2)
    assert (counts[:, 0] - counts[:, 1]).abs().max() <= 1
    assert 0.0 <= float(tr["x"].min()) and float(tr["x"].max()) <= 1.0


def _write_png(path, colour):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 10), colour).save(path)


def test_wilds_waterbirds_layout_on_a_tiny_folder(tmp_path):
    from bench.data.wilds import WildsGroupDataModule

    base = tmp_path / "waterbirds_v1.0"
    rows = []
    for i in range(12):
        y, place, split = i % 2, (i // 2) % 2, i % 3
        name = f"{i:03d}.Bird/img_{i}.png"
        _write_png(base / name, (255 * place, 0, 255 * y))
        rows.append({"img_id": i, "img_filename": name, "y": y, "split": split, "place": place, "place_filename": "x"})
    with open(base / "metadata.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    dm = WildsGroupDataModule(root=str(tmp_path), name="waterbirds", image_size=8)
    dm.setup()
    for sid, split in enumerate(("train", "val", "test")):
        s = dm.splits[split]
        want = [r for r in rows if r["split"] == sid]
        assert s["x"].shape == (len(want), 3, 8, 8)
        assert s["group"].tolist() == [2 * r["y"] + r["place"] for r in want]
        # the blue channel encodes y, the red channel the place, as written
        assert torch.allclose(s["x"][:, 2].mean((1, 2)), s["y"].float(), atol=1e-2)
    with pytest.raises(BenchError, match=r"waterbirds_v1.0/metadata.csv"):
        WildsGroupDataModule(root=str(tmp_path / "nowhere"), name="waterbirds").setup()


def test_wilds_celeba_layout_and_a_run(run_bench, tmp_path):
    from bench.data.wilds import WildsGroupDataModule

    base = tmp_path / "celebA_v1.0"
    attrs, parts = [], []
    for i in range(24):
        blond, male = i % 2, (i // 2) % 2
        image_id = f"{i:06d}.jpg"
        _write_png(base / "img_align_celeba" / image_id, (200 * blond, 100, 50 * male))
        attrs.append({"image_id": image_id, "Blond_Hair": 2 * blond - 1, "Male": 2 * male - 1, "Smiling": -1})
        parts.append({"image_id": image_id, "partition": (i // 4) % 3})
    for name, table in (("list_attr_celeba.csv", attrs), ("list_eval_partition.csv", parts)):
        with open(base / name, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(table[0]))
            w.writeheader()
            w.writerows(table)
    dm = WildsGroupDataModule(root=str(tmp_path), name="celeba", image_size=8)
    dm.setup()
    assert sorted(torch.cat([dm.splits[s]["group"] for s in ("train", "val", "test")]).tolist()) == sorted(
        [2 * (i % 2) + (i // 2) % 2 for i in range(24)]
    )
    rec = run_bench(
        [
            "task=group_priors",
            "profile=smoke",
            "method=dfr",
            "data=celeba",
            f"data.root={tmp_path}",
            "data.image_size=8",
            "dfr.num_subsets=1",
        ]
    )
    assert sum(rec["metrics"][f"test/group_count/{g}"] for g in range(4)) == len(dm.splits["test"]["y"])


# -- bad input -----------------------------------------------------------------------------------------------------
def test_group_method_on_data_without_groups_is_a_clear_error(run_bench):
    with pytest.raises(BenchError, match="method=dfr needs group labels"):
        run_bench(["task=group_priors", "profile=smoke", "method=dfr", "data=digits"])


def test_unknown_method_is_a_clear_error(run_bench):
    with pytest.raises(BenchError, match="unknown group_priors method 'gapp'"):
        run_bench(["task=group_priors", "profile=smoke", "method=gapp"])


def test_group_without_training_examples_warns_and_leaves_the_minimum(run_bench):
    # P(a = y) = 1: the minority groups 1 and 2 have no training examples
    with pytest.warns(UserWarning, match=r"group 1 \(y=-1,a=\+1\) has no examples in the train split"):
        rec = run_bench(["task=group_priors", "profile=smoke", "method=erm", "data.spurious_prob=1.0"])
    m = rec["metrics"]
    assert m["test/worst_group_acc"] == pytest.approx(min(m["test/group_acc/0"], m["test/group_acc/3"]))
    assert m["test/worst_group_acc_all"] == pytest.approx(min(m[f"test/group_acc/{g}"] for g in range(4)))


# -- claims --------------------------------------------------------------------------------------------------------
def _record(method, seed, wga, acc, tau=15.0):
    return {
        "seed": seed,
        "config": {"method": method, "gap": {"tau": tau}},
        "metrics": {"test/worst_group_acc": wga, "test/acc": acc},
    }


def test_claims_logic():
    from bench.harness.claims import evaluate
    from bench.tasks.group_priors.claims import CLAIMS

    recs = []
    for s in range(3):
        recs += [
            _record("erm", s, 0.70 + 0.01 * s, 0.95),
            _record("dfr", s, 0.90 + 0.01 * s, 0.93),
            _record("gap_last_layer", s, 0.91 + 0.005 * s, 0.94),
            _record("gap_last_layer", s, 0.85 + 0.01 * s, 0.94, tau=0.0),
        ]
    results = {r.name[:3]: r for r in evaluate(CLAIMS, RecordSet(recs))}
    assert all(r.passed for r in results.values())
    # ERM as good as DFR: (b) fails; GAP far below DFR: (c) fails; tau = 0 better: (d) fails
    bad = [_record("erm", s, 0.90, 0.92) for s in range(3)] + [
        _record("dfr", s, 0.92 + 0.01 * s, 0.93) for s in range(3)
    ]
    bad += [_record("gap_last_layer", s, 0.80 + 0.01 * s, 0.9) for s in range(3)]
    bad += [_record("gap_last_layer", s, 0.85, 0.9, tau=0.0) for s in range(3)]
    results = {r.name[:3]: r for r in evaluate(CLAIMS, RecordSet(bad))}
    assert not results["(a)"].passed and not results["(b)"].passed
    assert not results["(c)"].passed and not results["(d)"].passed
    # only ERM records: the other claims are not applicable
    assert [r.name[:3] for r in evaluate(CLAIMS, RecordSet(bad[:3]))] == ["(a)"]
