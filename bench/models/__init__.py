"""Shared networks. Inputs live in [0, 1]; any normalisation is a layer inside the model.

Every shared classifier takes ``input_shape`` and ``num_classes`` first (the harness passes them from the
datamodule) and exposes ``features`` (input -> penultimate features) and ``classifier`` (the last linear layer).
"""
