"""The student recipe: one dataclass writes and reads the manifest's ``recipe`` section."""

import dataclasses

from hello_build.options import BuildOptions
from hello_format.augment import AugmentConfig
from hello_format.recipe import Recipe


def test_a_recipe_reads_back_what_it_wrote():
    recipe = Recipe(loss="kl", temperature=4.0, epochs=7, batch_size=3, student_image_size=32,
                    augment=AugmentConfig(scale=(0.5, 1.0), patch_shuffle=2))
    section = recipe.to_manifest()
    assert section["augment"]["patch_shuffle"] == 2 and section["loss"] == "kl"
    assert Recipe.from_manifest(section) == recipe


def test_reading_fills_absent_augment_settings_and_applies_overrides():
    section = {**Recipe().to_manifest(), "augment": {"hflip": 0.0}, "added_later": 1}
    recipe = Recipe.from_manifest(section, lr=0.5, epochs=None, augment={"cutmix": 0.0})
    assert recipe.augment == AugmentConfig(hflip=0.0, cutmix=0.0)
    assert recipe.lr == 0.5 and recipe.epochs == Recipe.epochs


def test_the_builder_takes_the_recipe_defaults_from_the_recipe():
    options, recipe = BuildOptions(), Recipe()
    assert (options.loss, options.temperature, options.beta, options.epochs, options.student_batch_size,
            options.student_lr, options.student_optimizer, options.student_weight_decay) == (
        recipe.loss, recipe.temperature, recipe.beta, recipe.epochs, recipe.batch_size, recipe.lr, recipe.optimizer,
        recipe.weight_decay)
    augment = recipe.augment
    assert (options.hflip, options.patch_shuffle, options.cutmix, options.mixup, options.cutmix_alpha,
            options.mixup_alpha, tuple(options.crop_ratio)) == (
        augment.hflip, augment.patch_shuffle, augment.cutmix, augment.mixup, augment.cutmix_alpha,
        augment.mixup_alpha, augment.ratio)
    assert options.crop_min_scale != augment.scale[0]  # the builder's own choice for distilled images
    assert {f.name for f in dataclasses.fields(Recipe)} == set(Recipe().to_manifest())
