"""Shared metrics as torchmetrics ``Metric``s: their states are summed across processes, so they are exact
under DDP."""
