"""Attack configs (``_target_`` partials), their checks, and attacks whose answer is known in closed form."""

import functools
import textwrap

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from bench.attacks.factory import (
    attack_config,
    attack_enabled,
    attack_iterative,
    attack_norm,
    build_attack,
    check_attack,
    validate_attack_config,
)
from bench.attacks.noise import per_example_uniform, random_noise
from bench.attacks.pgd import PGD, PGDL2
from bench.harness.config import compose
from bench.harness.errors import BenchError
from bench.harness.registry import options


def linear_model(d: int = 6, c: int = 3) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(d, c)


def test_fgsm_equals_the_closed_form_step_on_a_linear_model():
    """For logits Wx + b the cross-entropy gradient in x is W^T (softmax - onehot(y)), so FGSM is
    x + eps * sign(W^T (p - e_y)), clipped to [0, 1]."""
    net = linear_model()
    x, y, eps = torch.rand(40, 6), torch.randint(0, 3, (40,)), 0.07
    adv = build_attack(attack_config({"name": "fgsm"}), net, eps)(x, y)
    with torch.no_grad():
        p = torch.softmax(net(x), 1)
        grad = (p - nn.functional.one_hot(y, 3).float()) @ net.weight
    expected = (x + eps * grad.sign()).clamp(0, 1)
    assert torch.allclose(adv, expected, atol=1e-6)
    assert (adv - x).abs().max() <= eps + 1e-6 and (adv != x).any()


def test_every_attack_config_is_a_target_partial_that_builds():
    net = linear_model()
    x, y = torch.rand(8, 6), torch.randint(0, 3, (8,))
    names = ("fgsm", "pgd_linf", "pgd_l2", "autoattack", "none")  # the shared ones (tasks test their own)
    assert set(names) <= set(options("attack"))
    for name in names:
        cfg = compose(["task=neural_collapse", f"attack={name}"]).attack
        if name == "none":
            assert "_target_" not in cfg and not attack_enabled(cfg)
            continue
        assert cfg._partial_ is True and attack_enabled(cfg), name
        assert attack_norm(cfg) in ("linf", "l2")
        if name == "autoattack":
            continue  # building is cheap but running AutoAttack is not a unit test
        adv = build_attack(cfg, net, float(cfg.eps[0]))(x, y)
        assert adv.shape == x.shape and torch.isfinite(adv).all(), name
    assert attack_iterative({"name": "pgd_linf"}) and not attack_iterative({"name": "fgsm"})
    assert attack_norm({"name": "pgd_l2"}) == "l2"


def test_the_partial_hydra_builds_and_the_config_give_the_same_attack():
    cfg = OmegaConf.create(
        {
            "_target_": "bench.attacks.standard.pgd_linf",
            "_partial_": True,
            "name": "pgd_linf",
            "eps": [0.1],
            "steps": 3,
            "step_size": 0.5,
            "random_start": True,
        }
    )
    opts = {k: v for k, v in cfg.items() if k not in ("eps", "name")}
    partial = instantiate(opts)
    assert isinstance(partial, functools.partial)
    from_partial = attack_config(partial)
    assert from_partial["steps"] == 3 and from_partial["_target_"] == "bench.attacks.standard.pgd_linf"
    net, x, y, i = linear_model(), torch.rand(10, 6), torch.randint(0, 3, (10,)), torch.arange(10)
    a = build_attack(cfg, net, 0.1)(x, y, index=i)
    b = build_attack(from_partial, net, 0.1)(x, y, index=i)
    assert torch.equal(a, b)


def test_a_legacy_name_config_is_its_group_file_with_the_given_keys_on_top():
    c = attack_config({"name": "pgd_linf", "steps": 3})
    assert c["_target_"] == "bench.attacks.standard.pgd_linf" and c["steps"] == 3 and c["step_size"] == 0.25
    with pytest.raises(BenchError, match="unknown attack 'nope'; known attack options: .*pgd_linf"):
        attack_config({"name": "nope"})


def test_a_task_brings_its_own_attack_from_its_folder(tmp_path, monkeypatch):
    pkg = tmp_path / "mytask_attacks"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent('''
        import torch
        from bench.attacks.factory import attack

        class TowardsZero:
            """Moves every input by eps towards 0 (a fixed, gradient-free perturbation)."""
            def __init__(self, model, eps, scale):
                self.eps, self.scale = eps, scale
            def __call__(self, x, y):
                return (x - self.scale * self.eps).clamp(0, 1)

        @attack(norm="linf", iterative=False)
        def towards_zero(model, eps, scale=1.0):
            return TowardsZero(model, eps, scale)
    ''')
    )
    (tmp_path / "attack").mkdir()
    (tmp_path / "attack" / "towards_zero.yaml").write_text(
        "_target_: mytask_attacks.towards_zero\n_partial_: true\nname: towards_zero\neps: [0.2]\nscale: 0.5\n"
    )
    monkeypatch.setenv("BENCH_INCLUDE", str(tmp_path))
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = compose(["task=neural_collapse", "attack=towards_zero"]).attack
    checked = check_attack(cfg)
    assert checked["eps"] == [0.2] and attack_norm(cfg) == "linf" and not attack_iterative(cfg)
    x = torch.full((2, 3), 0.5)
    assert torch.allclose(build_attack(cfg, linear_model(3, 2), 0.2)(x, None), torch.full((2, 3), 0.4))
    with pytest.raises(BenchError, match=r"attack.bogus is not an option of attack towards_zero; its options are sc"):
        check_attack({**checked, "bogus": 1})


@pytest.mark.parametrize(
    "eps, shown", [("abc", "abc"), ([-0.1], "[-0.1]"), ([0.1, float("nan")], "[0.1,nan]"), (True, "True")]
)
def test_bad_eps_is_one_line_naming_key_value_and_what_is_allowed(eps, shown):
    with pytest.raises(BenchError) as e:
        validate_attack_config(OmegaConf.create({"name": "pgd_linf", "eps": eps}))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"attack.eps={shown} is not allowed: radii must be non-negative numbers")


def test_bad_options_are_one_line_each():
    base = attack_config({"name": "pgd_linf"})
    cases = {
        "steps": (0, "attack.steps=0 is not allowed: use an integer >= 1"),
        "step_size": (-1, "attack.step_size=-1 is not allowed: use a positive number"),
        "S_eval": (0, "attack.S_eval=0 is not a valid number of posterior samples: use a positive integer"),
        "S_attack": (2.5, "attack.S_attack=2.5 is not a valid number of posterior samples"),
        "_target_": ("no.such.factory", "attack._target_=no.such.factory cannot be imported"),
    }
    for k, (v, start) in cases.items():
        with pytest.raises(BenchError) as e:
            check_attack({**base, k: v})
        assert str(e.value).startswith(start) and "\n" not in str(e.value), str(e.value)
    with pytest.raises(BenchError, match=r"attack.validity.tolerence is not a validity option"):
        check_attack({**base, "validity": {"tolerence": 0.1}})


def test_a_scalar_eps_becomes_a_one_element_list_in_the_run_config():
    cfg = compose(["task=neural_collapse", "attack.eps=0.1"])
    validate_attack_config(cfg.attack)
    assert list(cfg.attack.eps) == [0.1] and cfg.module.train_eps == 0.1  # ${attack.eps.0} resolves
    none = compose(["task=neural_collapse", "attack=none"]).attack  # the task's radius stays, nothing runs
    assert "_target_" not in validate_attack_config(none) and not attack_enabled(none)


def test_random_draws_are_keyed_by_example_not_by_batch():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y, i = torch.rand(30, 6), torch.randint(0, 3, (30,)), torch.arange(100, 130)
    perm = torch.randperm(30)
    for cls in (PGD, PGDL2):
        atk = cls(net, eps=0.3, alpha=0.1, steps=3, seed=5)
        whole = atk(x, y, index=i)
        halves = torch.cat(
            [atk(x[perm[:13]], y[perm[:13]], index=i[perm[:13]]), atk(x[perm[13:]], y[perm[13:]], index=i[perm[13:]])]
        )
        if cls is PGD:  # the sign of the gradient is exact; l2 steps divide by a norm: equal up to rounding
            assert torch.equal(whole[perm], halves)
        else:
            assert torch.allclose(whole[perm], halves, atol=1e-6)
        assert not torch.equal(whole, cls(net, eps=0.3, alpha=0.1, steps=3, seed=6)(x, y, index=i))
    for norm in ("linf", "l2"):
        a = random_noise(x, 0.2, norm, index=i, seed=1)
        b = torch.cat(
            [random_noise(x[:7], 0.2, norm, index=i[:7], seed=1), random_noise(x[7:], 0.2, norm, index=i[7:], seed=1)]
        )
        assert torch.equal(a, b)
    u = per_example_uniform(torch.arange(4000), (16,), 0, "check")
    assert abs(u.mean().item() - 0.5) < 0.005 and abs(u.var().item() - 1 / 12) < 0.002


def test_pgd_l2_works_on_flat_inputs_and_stays_in_the_ball():
    net = linear_model()
    x, y = torch.rand(20, 6), torch.randint(0, 3, (20,))
    adv = PGDL2(net, eps=0.5, alpha=0.2, steps=5)(x, y, index=torch.arange(20))
    assert (adv - x).norm(dim=1).max() <= 0.5 + 1e-5 and ((adv - x).norm(dim=1) > 0.1).all()
    assert torch.equal(PGDL2(net, eps=0.0, alpha=0.0, steps=3)(x, y), x)  # no 0 / 0 at eps = 0


def test_without_an_index_pgd_draws_exactly_as_torchattacks():
    import torchattacks

    net = linear_model()
    x, y = torch.rand(20, 6), torch.randint(0, 3, (20,))
    torch.manual_seed(3)
    ours = PGD(net, eps=0.1, alpha=0.03, steps=4)(x, y)
    torch.manual_seed(3)
    assert torch.equal(ours, torchattacks.PGD(net, eps=0.1, alpha=0.03, steps=4)(x, y))
