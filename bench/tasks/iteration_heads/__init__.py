"""Task ``iteration_heads``: chain of thought and iteration heads (Cabannes et al., arXiv:2406.02128).

Data (data.py): per length L, up to ``n_per_length`` distinct sequences split 50/50 into disjoint train and test
sets; training rows are length-balanced (``data.train_rows_per_length`` rows per length, drawn from that length's
training pool), batch 256 as in the paper.

Metrics of a ``pipeline=single`` run (stage ``main``):
  test/acc             mean of acc_L over the lengths with >= data.min_test_sequences (8) distinct test sequences
                       (parity: L >= 4; the headline sequence accuracy)
  length=<L>/test/acc  acc_L: fraction of test sequences of length L whose every post-EoI argmax prediction is
                       right, for every length (bench.harness.naming.point_name)
  test/token_acc, test/loss   masked (post-EoI) token accuracy and cross-entropy
  train/acc            test/acc's definition on the (length-balanced) training split
  test/attn/l2_mass_xt, test/attn/l1_mass_eoi, test/attn/l2_peak_xt, test/attn/l1_peak_eoi,
  test/attn/uniform_mass, test/attn/l2_mass_ratio    iteration-head metrics (CoT only; see metrics.py)
  epochs_to_95, reached_95   first epoch with test acc >= 0.95 (NaN if never), and whether it was reached
  curve/acc, curve/attn/<name>   the last point of the curves logged over training
Transfer runs (``pipeline=transfer``) have the same names prefixed by the stage: ``pretrain/``, ``full/``,
``layer2_mlp/`` and ``scratch/`` (e.g. ``scratch/epochs_to_95``).
Artifacts (``<stage>_`` prefixed outside stage ``main``): ``attention_maps`` PNG (attention of a few test
sequences of the longest length, layers side by side, iteration-head target cells circled), ``training_curves``
PNG, ``attention_record`` (.pt: those maps per layer and head, per-step metric curves over t, the history).
"""
