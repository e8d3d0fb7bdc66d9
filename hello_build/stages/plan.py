"""The build as a declared list of stages, in order (``hello_build.stages.context`` runs each one).

    teacher -> text_head -> transfer -> init -> image_update -> view_transfer

A stage that is off for a build (``when``) records nothing; its ``load`` still runs (the teacher
stage then loads the given teacher files).
"""

from __future__ import annotations

from hello_build.stages import image_update, init, teacher, text_head, transfer, view_transfer
from hello_build.stages.context import Stage

STAGES = (
    Stage("teacher", teacher.run, teacher.load, when=teacher.trains, fields=("checkpoints", "description")),
    Stage("text_head", text_head.run, text_head.load, fields=("fidelity",)),
    Stage("transfer", transfer.run, transfer.load, fields=("fidelity",)),
    Stage("init", init.run, init.load, fields=("source_size",)),
    Stage("image_update", image_update.run, image_update.load, when=image_update.enabled,
          fields=("feature_mse_before", "feature_mse_after", "images_updated")),
    Stage("view_transfer", view_transfer.run, view_transfer.load, when=view_transfer.enabled,
          fields=("fidelity", "kept_step", "steps")),
)
