"""A two-stage protocol for harness tests: a first model, then a main model warm-started from it, with the first
stage's weights cached for other runs."""

import torch


def two_stages(ctx):
    dm = ctx.build_datamodule()
    first = ctx.build_module(dm)
    cache = ctx.cache_dir("first", {"data": ctx.cfg.data, "model": ctx.cfg.model, "epochs": ctx.cfg.trainer.max_epochs})
    if (cache / "weights.pt").is_file():
        first.load_state_dict(torch.load(cache / "weights.pt", weights_only=True))
        ctx.log_metrics({"first_from_cache": 1})
    else:
        ctx.fit(first, dm, stage="first")
        torch.save(first.state_dict(), cache / "weights.pt")
        ctx.log_metrics({"first_from_cache": 0})
    main = ctx.build_module(dm)
    main.load_state_dict(first.state_dict())
    ctx.fit(main, dm)
