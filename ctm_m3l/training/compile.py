"""``torch.compile`` of the objective, as ``M3LTM(torch_compile=True)`` trains."""
from __future__ import annotations

import torch

__all__ = ["compile_objective"]

# Shapes (batch size, topics, vocabulary, views) for which the compiled objective keeps
# graphs in one process: a fit meets 2-4 (the full and the last batch, with and without
# missing views), so at least 32 configurations stay compiled.
RECOMPILE_LIMIT = 128


def compile_objective(objective: torch.nn.Module):
    """``objective`` compiled with static shapes: one graph per batch size met (the full
    batches and the last one).  fallback_random: dropout draws from torch's own generator, as
    eagerly, so a compiled fit draws the same masks as an eager fit with the same seed.

    Dynamo caches graphs on the forward's code, shared by every model of the process, and
    stops compiling a function after ``recompile_limit`` (8) shapes, running it eagerly for
    good: a process that fits models with several batch sizes, topic numbers or vocabularies
    (an ablation, ``reproduce``'s workers) would silently lose compilation after a few fits.
    The compiled calls run with a limit of at least ``RECOMPILE_LIMIT`` shapes."""
    compiled = torch.compile(objective, dynamic=False, options={"fallback_random": True})
    config = torch._dynamo.config

    def call(*args):  # cheaper than config.patch, a context manager, at every step
        limit = config.recompile_limit
        config.recompile_limit = max(limit, RECOMPILE_LIMIT)
        try:
            return compiled(*args)
        finally:
            config.recompile_limit = limit
    return call
