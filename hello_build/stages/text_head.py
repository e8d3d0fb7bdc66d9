"""Stage "text_head": the untrained projector is CLIP's zero-shot classifier; its fidelity is measured."""

from __future__ import annotations

from hello_build.stages.context import BuildContext
from hello_build.stages.transfer import describe, measure


def run(ctx: BuildContext) -> tuple[dict, None]:
    """The zero-shot head's fidelity to the teacher on held-out real views."""
    return {"fidelity": measure(ctx)}, None


def load(ctx: BuildContext, record: dict) -> None:
    ctx.log(f"zero-shot head: {describe(record['result']['fidelity'])}")
