"""The build's stages: one module each (``run(ctx) -> (result, tensors)`` and ``load(ctx, record)``),
their machinery in ``context`` and their declared order in ``plan``."""
