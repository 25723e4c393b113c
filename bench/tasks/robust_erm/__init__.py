"""Task ``robust_erm``: the price of implicit bias in adversarially robust ERM (Tsilivis et al., arXiv:2406.04981).

Linear part (``part=linear``): binary labels from a linear teacher; a linear model (or a diagonal network) trained
on the exact robust exponential loss exp(-(y<w, x> - eps ||w||_q)) by steepest descent (bench.optim.steepest:
GD, coordinate descent, sign-GD). eps = c * gamma_p with gamma_p the training set's largest l_p-robust margin
(a linear program). Several (m, c) problems train at once in one run; each writes its metrics under the prefix
``m=<m>/c=<c>/`` (no prefix when the run has one problem):
  test/robust_acc           exact robust test accuracy, mean 1[y<w, x> - eps ||w||_q > 0] (q dual to p)
  test/acc                  clean test accuracy
                            (a score of exactly 0 is an error in both; coordinate descent at eps = 0 leaves many
                            such ties on sparse inputs)
  test/tie_frac             fraction of test points with clean score exactly 0
  test/acc_ties_half, test/robust_acc_ties_half   the same accuracies with each tie counted as half right
  train/robust_acc, train/acc, train/loss   the same on the problem's own training set; robust risk at the end
  robust_gap                train/robust_acc - test/robust_acc
  train/normalized_margin   min_i y_i<w, x_i> / ||w||_q (-> gamma_p for the threat-aligned optimizer)
  w/l1_over_l2              ||w||_1 / ||w||_2 (sqrt(2 d / pi) ~ 12.8 for a dense Gaussian w at d = 256)
  w/teacher_cos             cos(w, w*)
  threat/gamma              gamma_p of the problem's training set
  problem/m, problem/c, problem/eps, problem/d   the problem's constants
  train/steps               optimizer steps (run-level)

Network part (``part=network``): a bias-free one-hidden-layer ReLU net on two classes of sklearn digits,
PGD-10 l_inf adversarial training at each ``network.train_eps`` (a stage ``train_eps=<e>`` each when a list):
  test/acc, test/robust_acc@eps=<e>, test/noise_acc@eps=<e>, ...   the harness's evaluation callbacks
  train/acc, train/robust_acc@eps=<e>                              the same on the training split
  robust_gap@eps=<e>                                               train minus test accuracy under PGD at e
  problem/train_eps, train/steps

Settings that follow the data: part=linear computes its radius from the training set (eps = c * gamma_p,
``threat.c``; ``threat.eps`` gives absolute radii instead) and its dimension from the datamodule. part=network
takes input shape and class count from ``network.data``; its radii (``network.train_eps`` and ``attack.eps``, 0.1 /
0.2) are in [0, 1] pixel units and suit digits and MNIST (the paper's 2-vs-7) but are not rescaled for other
data (set them with ``data@network.data=<other>``), nor is ``network.data.classes`` ([3, 8], digits' labels).
"""
