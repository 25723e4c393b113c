"""Task ``collapse_regression``: model collapse in regression (Dohmatob, Feng & Kempe, arXiv:2402.07712).

No SGD: every fit is closed form (torch.linalg), batched over repetitions. The protocol (``protocol.run``) runs
the studies listed in ``collapse.studies``; each simulated number is a mean over repetitions with its standard
error (``_se`` = std ddof=1 / sqrt(reps)) and, for the linear studies, the closed-form theory beside it.

Record metrics (``<n>`` a generation, ``<tag>`` = ``d<d>_T<T>_T0<T0>_<spectrum>``):
  ridgeless/d=<d>/T=<T>/T0=<T0>/spectrum=<s>/generation=<n>/{err, err_se, theory}
                                               OLS chain + OLS downstream; theory = the exact formula
  overparam/d=<d>/T0=<T0>/generation=<n>/{err, err_se, theory}   noise-free min-norm chain, ||w_n - w0||^2
  ridge/generation=<n>/{fixed, clean_tuned, adaptive}/{err, err_se, theory, lambda}
                                                ridge downstream with the fixed small lambda, the lambda tuned at
                                                n = 0 (theory argmin) and the adaptive lambda(T, n) (theory argmin)
  ridge/generation=<n>/best_lambda, best_lambda_theory    argmin over the simulated lambda grid / adaptive lambda
  ridge/generation=<n>/{adaptive_gain, clean_tuned_gain}[_se]
                                               paired error differences (fixed - adaptive, clean_tuned -
                                                adaptive), same repetitions
  ridge/{fixed, clean_tuned}/{slope, slope_se, curvature, curvature_se, slope_theory}
                                                per-repetition line / quadratic fits of error vs n
  ridge/T=<T>/generation=<n>/{fixed, adaptive}/{err, err_se, theory}   error vs downstream sample size T
  ridge/{lambda_grid_ratio, fixed_lambda, clean_lambda}
  kernel=<kernel>/generation=<n>/{test_mse, test_acc}[_se]   kernel ridge on the data config's test split; test_mse =
                                                mean over test inputs of ||f(x) - onehot(y)||^2
  kernel=<kernel>/{test_mse_increase, test_mse_slope}[_se]   MSE(n_max) - MSE(0) and the slope vs n, paired
  kernel=<kernel>/{train/mse, lengthscale}
Artifacts: error_vs_n, error_vs_lambda, error_vs_T, kernel_error_vs_n (PNG), curves (JSON of every curve).

Settings that follow the data: the linear studies generate their own Gaussian data (none of ``data`` is used);
the kernel study takes its pool of inputs and its class count (one-hot targets) from the datamodule and the
kernel length scale from the pool (``module.lengthscale`` null: median pairwise distance). Its label noise
(``module.sigma`` / ``sigma0``) is in one-hot target units, the same on every data; ``module.T`` / ``T0`` (500)
are draws from the pool and assume one of at least that size.
"""
