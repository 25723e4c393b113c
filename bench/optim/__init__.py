"""Optimizers shared by tasks (torch.optim-style classes a config can name in ``conf/optimizer/``)."""
