"""Task ``collapse_tails``: model collapse as a change of scaling laws (Dohmatob et al., arXiv:2402.07043).

Part ``hutter`` (closed form, no optimizer; ``zipf.py``, ``hutter.py``, ``sweeps.py``): Zipf data p_i ~ i^-beta
(infinite support: head exact, tail analytic), the memorising model's exact test error sum_i p_i (1 - q_i)^T
for clean, top-k / top-p cut, clean-mixed and generation-chain training distributions q, with Monte-Carlo
training sets overlaid. Part ``gcd`` (``gcd.py``): an MLP learns gcd(a, b) of one-hot integers in [1, max_int]
from clean labels (generation 0), then from the previous generation's labels with its tail cut.

Record metrics (every name flat):
  ``hutter/...``                  the closed-form numbers, listed in :mod:`bench.tasks.collapse_tails.sweeps`
                                  (slopes, plateaus, exit times, generation floors, Monte-Carlo agreement).
  ``gcd/generation=<n>/test/acc``         test accuracy of generation n (0 = clean labels).
  ``gcd/generation=<n>/test/bucket_acc/<b>``, ``.../bucket_count/<b>``  accuracy and size of gcd bucket b
                                  (gcd in [2^b, 2^(b+1)), the last bucket open), with ``worst_bucket_acc`` and
                                  ``adjusted_bucket_acc``.
  ``gcd/generation=<n>/test/rare_acc``, ``.../common_acc``  count-weighted accuracy over buckets >= / <
                                  gcd.rare_from_bucket.
  ``gcd/generation=<n>/generated/label_acc``, ``.../distinct_labels``  (n >= 1) agreement of its training labels with
                                  the true gcd, and how many gcd values they still contain.
  ``gcd/generation=<n>/train/loss``       last-epoch training loss.
Figures (run artifacts): ``clean_scaling``, ``tail_cut``, ``mixing``, ``generations`` (error vs T, log-log, with
predicted slopes / plateaus / exits) and ``gcd_buckets``; the curves themselves in ``hutter_curves.json``.

Settings that follow the data: none: both parts run on data the task generates itself (the Zipf law of
``hutter``, the gcd pairs of ``data`` = :class:`bench.tasks.collapse_tails.gcd.GcdDataModule`, whose knobs are in
this task's config); another ``data=`` is not supported (it fails when the data are built).
"""
