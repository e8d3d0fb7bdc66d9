"""hello_format: read, write and use ``.hello`` label-light distilled dataset bundles.

The front door: ``from hello_format import HelloDataset, mse_ce_loss``. Each name in ``__all__`` is
imported from its module on first use, so ``import hello_format`` stays cheap: no open_clip, no
huggingface_hub, no card writer until a name that needs them is used.
"""

from hello_format._torchvision_shim import ensure_torchvision_importable
from hello_format.face import lazy_names

ensure_torchvision_importable()

__version__ = "0.1.0"  # the one version source (pyproject.toml reads it)

_HOMES = {
    "Bundle": "bundle", "Storage": "bundle", "write_bundle": "bundle",
    "open_bundle": "hub.resolver", "is_hub_uri": "hub.resolver",
    "HelloDataset": "dataset", "LabelledImages": "dataset", "LabelledBatch": "dataset",
    "Projector": "projector", "load_base": "base", "LabelOptions": "labelling", "ProjectorTeacher": "teacher",
    "mse_ce_loss": "losses", "kl_loss": "losses",
    "AugmentConfig": "augment", "augment_batch": "augment",
    "Recipe": "recipe",
    "EncoderLoraConfig": "generator", "HeadConfig": "generator", "HeadLoraConfig": "generator",
    "HelloError": "errors", "BundleError": "errors", "HeaderError": "errors", "ManifestError": "errors",
    "UnsupportedVersionError": "errors", "IntegrityError": "errors", "ImageDecodeError": "errors",
    "BaseModelError": "errors", "HubError": "errors", "HubFileNotFoundError": "errors", "HubCacheError": "errors",
    "DeviceError": "errors", "AugmentError": "augment",
}

__all__ = ["__version__", *_HOMES]

__getattr__, __dir__ = lazy_names(__name__, _HOMES)
