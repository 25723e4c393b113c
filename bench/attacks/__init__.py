"""Adversarial attacks from torchattacks, built from the ``attack`` config group."""
