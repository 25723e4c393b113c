"""Adversarial attacks as ``_target_`` configs (``conf/attack/``): factories wrapping torchattacks
(:mod:`bench.attacks.standard`), PGD with a random start keyed by example index (:mod:`bench.attacks.pgd`), the
random-noise baseline and per-example draws (:mod:`bench.attacks.noise`), and building / checking a config
(:mod:`bench.attacks.factory`)."""
