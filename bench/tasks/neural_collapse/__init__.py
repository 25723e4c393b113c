"""Task ``neural_collapse``: robustness of neural collapse (Su, Li, Tsiligkaridis & Yin, arXiv:2311.07444).

Methods (``method=``): ``st`` standard training, ``at`` PGD adversarial training (Madry et al.), ``trades``
(Zhang et al., beta = 6). One run = one method and seed; ``bench verify`` runs all three.

Record metrics besides the harness's ``test/acc``, ``test/worst_class_acc``, ``test/robust_acc``:
  ``nc/init/clean/nc1``                    NC1 of clean training features before training (last hidden layer)
  ``nc/<kind>/nc1``                         NC1 of the last hidden layer's training features, kind = clean | pgd | noise
  ``nc/<kind>/nc2_equinorm``, ``..._equiangle`` (class means) and ``..._w`` (classifier rows)
  ``nc/<kind>/nc3``                         self-duality of classifier and class means
  ``nc/<kind>/nc4``, ``nc/<kind>/ncc_acc``, ``nc/<kind>/net_acc``  nearest-class-centre vs network predictions,
                                            features of (perturbed) training inputs, clean class means
  ``nc/<kind>/align_cos``                   mean cosine between perturbed and clean centred class means
  ``nc/layer<k>/<kind>/nc1``                NC1 of hidden layer k (1-based, earlier layers)
  ``nc/test_pgd/ncc_acc``, ``nc/test_pgd/net_acc``  NCC and network accuracy on PGD test inputs
  ``nc/train_samples``                      training examples the NC metrics used (``max_train_samples``, exact)
Metric conventions are stated in :mod:`bench.metrics.neural_collapse`. PGD here is l_inf PGD with the ``attack``
config (random start, 10 steps); noise is uniform in the same l_inf ball; both draw per example index, so the
metrics are the same on 1 or N DDP processes. NC1 at init is measured in eval mode on the same examples.

Settings that belong to the data (bench/data/statistics.py): the model's input standardisation comes from the
datamodule (``model.mean``/``model.std`` null: declared by the data config or computed on its training split),
and the attack radius is the data config's ``eps_scale`` (digits: 0.2) unless ``attack.eps`` is set; data that
declare none (mnist1d, gaussians) are refused before training until ``attack.eps`` is given.
Recipe (experiment=neural_collapse_paper): the same for every method, SGD momentum 0.9, wd 5e-4, lr 0.1 with the
step schedule of the official code (scheduler=step: /10 after 25%, /100 after 37.5% of the epochs), batch 32.
"""
