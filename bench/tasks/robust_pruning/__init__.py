"""Task ``robust_pruning``: data pruning and classification bias, with DRoP (Vysogorets, Ahuja & Kempe,
arXiv:2404.05579). TASKS.md section 4.

One run = one method at one density: ``method=<score>`` keeps the ``d N`` highest-scoring (hardest) examples,
``method=<score>+drop`` keeps DRoP's class quotas (proportional to the query models' validation error, capped at
class size, excess redistributed) filled by the score within each class (``random+drop``: at random). Scores:
``random``, ``el2n``, ``grand``, ``forgetting``, ``dynamic_uncertainty``, ``coreset``. Protocol and caching:
:mod:`bench.tasks.robust_pruning.protocol`; quota and floor rules: :mod:`bench.tasks.robust_pruning.quotas`.

Settings that follow the data: input shape and class count come from the datamodule. The input standardisation
``model.mean`` / ``model.std`` (0.4756 / 0.1108) is mnist1d's; on any other data it is refused before training
until ``model.mean`` / ``model.std`` give that data's statistics (0 / 1 for none).
"""

METRICS = {
    "test/acc": "average test accuracy of the final model (test half of the test split)",
    "test/worst_class_acc": "lowest per-class test accuracy (recall)",
    "test/class_acc/<k>": "test recall of class k (harness ClassificationEvalCallback)",
    "test/class_acc_gap": "best minus worst class accuracy",
    "test/class_acc_std": "population std of the class accuracies",
    "prune/density": "the requested density d",
    "prune/kept": "examples kept (round(d N))",
    "prune/kept_fraction": "kept / N",
    "prune/class_kept/<k>": "examples of class k kept",
    "prune/class_density/<k>": "kept / size of class k",
    "prune/min_class_density, prune/max_class_density": "extremes over classes",
    "prune/floored_classes": "classes raised to robust_pruning.min_per_class by the floor rule",
    "prune/drop_perfect_recall_classes": "+drop runs: classes with validation recall 1.0, so DRoP quota 0 (warned)",
    "query/val_recall/<k>": "validation recall of class k, mean over query models (DRoP's input)",
    "query/train_acc": "query models' final training accuracy (mean)",
    "query/early_epoch": "epoch EL2N and GraNd are read at",
    "query<i>/train/loss": "training loss of query model i",
    "theory/*": "closed-form two-Gaussian check of claim (d) (bench/tasks/robust_pruning/theory.py)",
}
