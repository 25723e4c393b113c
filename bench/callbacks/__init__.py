"""Evaluation as Lightning callbacks; each reads ``outputs["logits"]`` of the module's ``test_step``."""
