"""Task ``group_priors``: group-aware priors for subpopulation shift (GAP; Rudner et al., AISTATS 2024,
arXiv:2403.09869) and its baselines ERM, DFR, GroupDRO and JTT. TASKS.md section 5.

Protocol (``protocol.py``): ERM on the training split (cached per data + model + optimizer + erm + erm_seed, so
every method and second-stage seed reuses it) -> the method -> test on the group-balanced test split.
``method=erm | dfr | group_dro | jtt | gap_last_layer | gap_all_layers``.

Record metrics besides the harness's (``test/acc``, ``test/worst_group_acc``, ``test/adjusted_group_acc``,
``test/group_acc/<g>``, ``test/group_count/<g>``, worst-class and per-class numbers):
  ``select/val_<metric>``      the validation score of the selected model (``<metric>`` = ``selection.metric``,
                               or ``erm.selection_metric`` for ERM)
  ``select/epoch``             the selected epoch (ERM, GroupDRO, JTT, GAP; 1-based)
  ``select/C``                 DFR's selected inverse L1 strength
  ``select/prior_precision``   GAP's selected 1/sigma_p^2 when ``gap.prior_precision`` is a grid
  ``gap_grid<i>/...``          each GAP grid point's training loss and selection (``i`` = its index in the grid)
  ``erm/train/loss``, ``erm/select/val_<metric>``, ``erm/select/epoch``   the shared ERM stage
  ``group_dro/weight/<g>``     GroupDRO's group weights q at the selected epoch
  ``jtt/error_set_size``, ``jtt/error_set_fraction``   JTT's upweighted training errors
  ``test/worst_group_acc_all`` only when a group has no training examples: the minimum over every measured group
                               (``test/worst_group_acc`` then leaves such groups out, with a warning naming them)

Settings that follow the data: input shape, class count and groups come from the datamodule; the method
hyper-parameters (GAP's s, tau, rho, prior precision grid, DFR's C grid) are the task's own, not tied to a data
set (the prior precision is selected on held-out validation). None is hard-coded for the default data.
"""
