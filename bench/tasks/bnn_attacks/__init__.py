"""Task ``bnn_attacks``: Bayesian neural networks are not inherently robust (Feng, Rudner, Tsilivis & Kempe,
arXiv:2404.19640).

Posteriors (``model=bnn_<kind>``, :mod:`bench.models.posteriors`): deterministic, mc_dropout, mfvi, ensemble, hmc.
Attacks (l_inf PGD on the posterior predictive mean with EOT, :mod:`bench.tasks.bnn_attacks.attacks`): label PGD
(``attack=bnn_pgd``), adaptive detection (``bnn_attacks.adaptive_attack``), semantic shift
(``bnn_attacks.shift_attack``). Protocol: :mod:`bench.tasks.bnn_attacks.protocol`.

METRICS (``<e>`` = an attack radius; H = predictive entropy, MI = mutual information, :mod:`bench.metrics.uncertainty`)
  ``test/acc``                              clean accuracy of the predictive mean (S_eval samples)
  ``test/robust_acc``                       robust accuracy at ``bnn_attacks.headline_eps`` (PGD-EOT, S_eval)
  ``test/robust_acc@eps=<e>``               the same at each radius of ``attack.eps``
  ``test/robust_acc_few_samples@eps=<e>``   the same attacked inputs evaluated with S_eval_few samples
  ``test/robust_acc_no_eot@eps=<e>``        PGD with S_attack_no_eot (1) sample per step, evaluated with S_eval
  ``test/robust_acc_one_draw@eps=<e>``      PGD on one fixed posterior draw, evaluated with S_eval fresh samples
  ``test/robust_acc_2x_steps@eps=<e>``      twice the steps at half the step, first validity_examples inputs (validity)
  ``test/noise_acc@eps=<e>``                accuracy under uniform noise in the ball
  ``test/entropy``, ``test/mi``             mean H and MI on clean test inputs
  ``test/adv_entropy@eps=<e>``, ``test/adv_mi@eps=<e>``   mean H, MI on PGD inputs
  ``detect/auroc_entropy@eps=<e>``, ``detect/auroc_mi@eps=<e>``  AUROC of PGD inputs (positive) vs clean, by H / MI
  ``detect/adaptive_auroc_{entropy,mi}@eps=<e>``  the same under the adaptive detection attack
  ``detect/adaptive_robust_acc@eps=<e>``, ``detect/adaptive_{entropy,mi}@eps=<e>``
  ``shift/test/acc``                        clean accuracy of the posterior trained on the in-distribution classes
  ``ood/auroc_entropy``, ``ood/auroc_mi``   OOD AUROC (OOD positive, in-distribution test negative), clean
  ``ood/attacked_auroc_{entropy,mi}@eps=<e>``   OOD AUROC with the OOD inputs under the entropy attack
  ``ood/auroc_drop_{entropy,mi}@eps=<e>``   clean minus attacked OOD AUROC
  ``ood/entropy_in``, ``ood/entropy_ood``, ``ood/attacked_entropy_ood@eps=<e>``
  ``hmc/accept_rate``, ``hmc/step_size``, ``hmc/divergences``, ``hmc/num_steps`` (and ``shift/hmc/...``)

Settings that follow the data: the posterior's input standardisation comes from the datamodule (``model.mean`` /
``model.std`` null: declared by the data config or computed on its training split, bench/data/statistics.py);
the headline radius ``bnn_attacks.headline_eps`` is the data config's ``eps_scale`` (digits: 0.2) and must be one
of ``attack.eps``, so data of another scale are refused until their radii are given; data that declare none
(mnist1d, and mnist / cifar / gaussians, whose configs have no ``eps_scale``) are refused before training until
``bnn_attacks.headline_eps`` is set. The radii lists (``attack.eps``, ``bnn_attacks.adaptive_attack.eps``,
``bnn_attacks.shift_attack.eps``) are in input units and are not rescaled: set them with the headline radius.
Input shape and class count come from the datamodule; ``bnn_attacks.shift.in_classes`` / ``ood_classes`` (digits
0-4 vs 5-9) must exist in the data (refused otherwise).
"""
