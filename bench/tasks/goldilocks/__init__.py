"""Task ``goldilocks``: the Goldilocks zone of initialisation (Vysogorets, Dawid & Kempe, arXiv:2402.03579).

One run = one data set (``data=circles`` default, ``data=digits`` ...) and seed. For a homogeneous net (no biases,
ReLU, He-normal init w0, L weight layers) it sweeps the init scale alpha over ``10^[-3, 3]`` (steps of 0.25), and
at every alpha computes on the whole training set's cross-entropy (:mod:`bench.metrics.curvature`, float64):
the Hessian at ``alpha * w0`` (on a random d = 50 subspace R'HR by default, or exact, or Hutchinson), the same at
``w0`` with softmax temperature ``alpha^-L`` (claim a), the Gauss-Newton part G and H - G; gradient norm and prior
mismatch at fresh random inits (claim c); then trains every ``alpha * w0`` with full-batch GD at lr
``0.1 / alpha^(L-2)`` in one Lightning stage and records its final train and test accuracy.

METRICS (sweep points named with :func:`bench.harness.naming.point_name`):
  ``alpha=<a>/curv/<q>``          at ``alpha * w0``; q = positive_curvature, frac_positive, trace, fro, top_eig, dim,
                                  loss, grad_norm, prior_mismatch, ggn/<...> (G), rest/<...> (H - G),
                                  hutch/<...> (with curvature.probes > 0)
  ``temperature=<T>/curv/<q>``    at ``w0`` with logits divided by ``T = alpha^-L`` (same q, without G)
  ``alpha=<a>/identity/hessian_rel_err``, ``alpha=<a>/identity/curv_abs_diff``  the identity of claim (a)
  ``alpha=<a>/train/acc``, ``alpha=<a>/test/acc``  final accuracies after GD from ``alpha * w0`` (None where it
                                  diverged, marked ``alpha=<a>/diverged`` = 1, counted in ``sweep/diverged``)
  ``init=<i>/init/{grad_norm,prior_mismatch,loss}``  the random inits; ``inits/corr``, ``inits/slope``
  ``curv/peak``, ``curv/peak_alpha``, ``sweep/best_test_acc``, ``sweep/best_alpha``, ``sweep/test_acc_at_peak``,
  ``identity/max_curv_abs_diff``, ``model/depth``, ``model/num_params``
Figures: curvature_vs_alpha (temperature sweep overlaid), accuracy_vs_alpha, grad_vs_mismatch; ``bench verify``
draws them over all seeds (report hook).

Settings that follow the data: input shape and class count come from the datamodule; the model's input
standardisation ``model.mean`` / ``model.std`` is the datamodule's when null (declared by the data config or
computed on its training split, bench/data/statistics.py). The default 0 / 1 (no standardisation) is the circles'
setting and is refused before training on any other data until ``model.mean`` / ``model.std`` are set (null, or
numbers: the verify plan gives digits 0.305 / 0.376). ``data.seed`` stays 0 on every data set (one fixed file).
"""
