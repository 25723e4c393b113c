"""Task ``galaxy_distillation``: dataset distillation of galaxy morphology with Matching Training Trajectories (MTT;
Cazenavette et al. 2022) and its self-adaptive start-epoch rule (Guan, Lin et al., arXiv:2311.17967). TASKS.md
section 9.

Methods (``method=``): ``random_real``, ``class_mean``, ``mtt``, ``adaptive`` (self-adaptive MTT) and ``full``;
``galaxy_distillation.images_per_class`` is k. One run = one method, k and seed; the expert trajectories are a
cached stage shared by every distilling run of a seed (``protocol.py``). Default data: generated galaxies
(``bench.data.galaxies``, 7 classes); ``data=galaxy10`` reads Galaxy10 DECaLS (``bench.data.galaxy10``).

METRICS (besides the experts' ``expert<i>/test/acc`` etc. from their Lightning fits):
  ``test/acc``, ``test/acc_std``     mean and std (ddof=1) of the test accuracy of ``eval.num_nets`` fresh networks
                                     trained on the method's set only
  ``net=<i>/test/acc``               each evaluation network's test accuracy (net i: same init in every run of a seed)
  ``test/num_nets``, ``eval/lr``     number of evaluation networks; their step size (the learned alpha if distilled)
  ``distill/lr``                     the learned step size alpha
  ``distill/loss_first``, ``distill/loss_last``   mean matching loss of the first / last 10 iterations
  ``distill/t_plus_first``, ``distill/t_plus_final``  T+ at the first / last iteration (constant for ``mtt``)
Artifacts: ``galaxy_samples.png`` (training images per class), ``synthetic_images.png`` (the set, one row per
class), ``t_plus.png`` (T+ over iterations), ``distilled.pt`` (images, labels, alpha, losses, T+, probe losses
and the distillation's CPU seconds).

Settings that follow the data: image size, channel count and class count come from the datamodule (the ConvNet
is built for ``input_shape``); a ``model.depth`` that would shrink the final feature map below 2x2 on this image
size (8 px at depth 3) is refused before training, naming the largest depth allowed. The input standardisation
``model.mean`` / ``model.std`` is the generated galaxies' per-band statistics; on any other data (data=galaxy10) it
is refused before training until ``model.mean=[...] model.std=[...]`` give that data's per-channel statistics. The
paper and smoke profiles' image counts (``data.n_train`` / ``n_test``) apply to the generated galaxies only
(conf/experiment_data/, conf/task_profile_data/).
"""
