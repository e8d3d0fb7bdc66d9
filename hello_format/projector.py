"""The projector: a CLIP image encoder with LoRA plus a text-initialised head -> class logits.

``logits = logit_scale * normalize(E_I(x)) @ (T + delta)^T`` (``normalize`` unless the manifest's
``head.normalize_features`` is false), where ``T`` are the class text embeddings (computed by the
base's text tower from the class names, and cached locally; stored in the bundle only when it embeds
its image tower alone) and ``delta`` the head's low-rank update. With a prior weight ``w`` (format
2.0, ``head.prior_weight``) the labels keep part of the CLIP prior: ``(1 - w) * logits + w *
zero_shot``, where the zero-shot projector is the same base and text head with no deltas.
One module serves the builder (trainable LoRA) and readers (merged).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

import hello_format  # noqa: F401  (installs the torchvision op shim before open_clip loads)
import open_clip

from hello_format import head_cache, limits, lora
from hello_format.base import check_head_work, check_remote_opt_in, create_base, image_hw
from hello_format.consistency import ENCODER_PREFIX, HEAD_A, HEAD_B, HEAD_WEIGHT
from hello_format.errors import BaseModelError, BundleError, HelloError, ManifestError
from hello_format.generator import EncoderLoraConfig, HeadConfig
from hello_format.head import HeadLoRA, text_embeddings
from hello_format.labelling import LabelOptions
from hello_format.runtime import apart_from_caller, resolve_device
from hello_format.text import shortened


# label() refuses float images whose largest value is above this: 0-255 pixels, not [0, 1] ones (which a
# harness's colour augmentation may push to -1 or 2, so nothing nearer is refused)
MAX_UNIT_INPUT = 10.0


def _with_prior_weight(head: HeadConfig, weight) -> HeadConfig:
    """``head`` with a prior weight an API caller gave, checked by HeadConfig; a bad one is the argument's
    HelloError, not a ManifestError blaming a file."""
    try:
        return dataclasses.replace(head, prior_weight=weight)
    except ManifestError:
        raise HelloError(f"prior_weight must be a number in [0, 1), got {shortened(weight)}") from None


def conv_tower(visual: nn.Module) -> bool:
    """Whether an image tower has convolutions that a memory format speeds up (a ResNet's; a ViT's patch
    embedding, kernel = stride, is a matrix product): where channels_last applies."""
    return any(isinstance(m, nn.Conv2d) and m.kernel_size != m.stride for m in visual.modules())


class Projector(nn.Module):
    """Images (float in [0, 1], ``[B, 3, h, w]``, any h, w) -> fp32 logits ``[B, C]``."""

    def __init__(self, clip_model: nn.Module, base_manifest: dict, class_names: Sequence[str], *,
                 head: HeadConfig, encoder_lora: EncoderLoraConfig | None,
                 train_logit_scale: bool = False, tokenizer=None, class_embeddings: torch.Tensor | None = None,
                 progress: bool | None = None):
        """``class_embeddings``: the text head ``T`` ``[C, d]`` when known (stored or cached); otherwise
        ``clip_model``'s text tower computes it, with a progress bar (``progress``; None: where someone
        watches, a terminal or a notebook, as tqdm decides)."""
        super().__init__()
        self.base_manifest = dict(base_manifest)
        self.class_names = list(class_names)
        if head.ensemble != "mean":
            raise ManifestError(f"head.ensemble {head.ensemble!r} is not supported: only 'mean'")
        if not head.logit_scale > 0:
            raise ManifestError(f"head.logit_scale must be positive, got {head.logit_scale}")
        self.head_config, self.encoder_lora = head, encoder_lora
        self.log_logit_scale = nn.Parameter(torch.tensor(math.log(float(head.logit_scale))))
        self.merged = False
        self._labelling = None  # resolved LabelOptions, set by prepare_labelling
        object.__setattr__(self, "_encoder", None)  # the compiled encoder (LabelOptions.compile); not a submodule
        self.image_size = image_hw(base_manifest["image_size"])
        if class_embeddings is None:
            tokenizer = tokenizer or open_clip.get_tokenizer(base_manifest["architecture"])
            embeddings = text_embeddings(clip_model, tokenizer, self.class_names, head.templates, progress=progress)
        else:
            embeddings = class_embeddings.detach().to(_device(clip_model.visual), torch.float32).clone()
        self.register_buffer("mean", _channel_vector(base_manifest["mean"], embeddings.device),
                             persistent=False)
        self.register_buffer("std", _channel_vector(base_manifest["std"], embeddings.device),
                             persistent=False)
        self.register_buffer("text_embeddings", embeddings, persistent=False)
        self.visual = clip_model.visual
        if encoder_lora:
            lora.inject(self.visual, encoder_lora)
        self.head = None
        if head.lora:
            self.head = HeadLoRA(len(self.class_names), embeddings.shape[1], head.lora.r, head.lora.lora_alpha)
        self.prior_visual = None    # the image tower without deltas, when the labels mix in the zero-shot projector
        object.__setattr__(self, "_prior_encoder", None)   # its compiled form (LabelOptions.compile)
        self.set_prior_weight(head.prior_weight)
        for name, parameter in self.named_parameters():
            parameter.requires_grad_("lora_" in name or (train_logit_scale and name == "log_logit_scale"))
        self.to(embeddings.device)

    @property
    def logit_scale(self) -> float:
        """The scalar multiplying feature-to-class-weight cosines (stored as head.logit_scale)."""
        return float(self.log_logit_scale.detach().exp())

    @classmethod
    def for_training(cls, clip_model: nn.Module, base_manifest: dict, class_names: Sequence[str], *,
                     head: HeadConfig, encoder_lora: EncoderLoraConfig | None,
                     train_logit_scale: bool = False, class_embeddings: torch.Tensor | None = None) -> "Projector":
        """A projector whose only trainable parameters are the encoder and head LoRA A/B (and, with
        ``train_logit_scale``, the logit scale: the teacher's logits may span more than CLIP's).
        ``class_embeddings``: the text head when already computed (as for ``__init__``)."""
        projector = cls(clip_model, base_manifest, class_names, head=head, encoder_lora=encoder_lora,
                        train_logit_scale=train_logit_scale, class_embeddings=class_embeddings)
        return projector.train()

    @classmethod
    def from_bundle(cls, bundle, *, device="cpu", merge: bool = True, checkpoint: str | None = None,
                    allow_remote_base: bool = False, use_head_cache: bool = True,
                    prior_weight: float | None = None, verify: bool = True, progress: bool | None = None) -> "Projector":
        """Rebuild a bundle's projector (a ``Bundle``, a path or an ``hf://`` URI): base (checked), text
        head, LoRA weights; merged by default.

        Every stored weight it uses is checked against its sha256 first (once per opened Bundle; a
        bundle opened with ``verify=True`` is not hashed again; ``verify=False`` skips it) and finite, and
        the merged weights after merging.
        ``allow_remote_base``: accept a custom base config that makes open_clip fetch a model.
        The text head is the bundle's ``head.weight`` when it stores one; otherwise the local head
        cache's entry (``hello_format.head_cache``; then the text tower is never built), or computed
        by the text tower and cached (``use_head_cache=False``: neither read nor written).
        ``prior_weight``: label with this mix instead of the bundle's ``head.prior_weight`` (an ablation).
        ``progress``: a bar while the text tower encodes the class prompts (None: where someone watches).
        The build leaves torch's global random streams as they were and makes float32 weights, whatever
        the caller's default dtype and device (``runtime.apart_from_caller``).
        """
        from hello_format.bundle import Bundle
        from hello_format.hub.resolver import open_bundle

        check_remote_opt_in(allow_remote_base)   # before a file is opened or hashed
        if not isinstance(bundle, Bundle):
            with open_bundle(bundle) as opened:
                return cls.from_bundle(opened, device=device, merge=merge, checkpoint=checkpoint,
                                       allow_remote_base=allow_remote_base, use_head_cache=use_head_cache,
                                       prior_weight=prior_weight, verify=verify, progress=progress)
        device = resolve_device(device)
        with apart_from_caller(device):   # a caller's seeded run draws the same, and fp32 weights
            manifest = bundle.manifest
            base_manifest = manifest["base"]
            head, encoder_lora = HeadConfig.from_manifest(manifest["head"]), EncoderLoraConfig.from_manifest(manifest["lora"])
            if prior_weight is not None:
                head = _with_prior_weight(head, prior_weight)
            if verify:
                bundle.verify_projector()
            else:
                bundle.check_finite()
            embedded = bundle.base_state_dict() if base_manifest.get("source") == "embedded" else None
            embeddings, key = bundle.head_weight(), None
            if embeddings is None and use_head_cache:
                key = head_cache.head_key(base_manifest, bundle.class_names, head.templates, head.ensemble)
                embeddings = head_cache.load(key, bundle.num_classes)
            clip_model = create_base(base_manifest, embedded_state=embedded, checkpoint=checkpoint, device=device,
                                     allow_remote=allow_remote_base, text_tower=embeddings is None)
            width = getattr(clip_model.visual, "output_dim", None)
            if embeddings is not None and width is not None and embeddings.shape[1] != width:
                if key is None:
                    raise ManifestError(f"{bundle.path}: tensor 'head.weight' is {list(embeddings.shape)}, the base's "
                                        f"image tower gives {width}-wide features")
                embeddings = None   # a cache entry that does not fit this base: recompute it
                clip_model = create_base(base_manifest, embedded_state=embedded, checkpoint=checkpoint, device=device,
                                         allow_remote=allow_remote_base)
            if encoder_lora:   # before peft allocates: what it allocates is bounded by what the file stores
                lora.check_stored(clip_model.visual, encoder_lora, bundle.lora_shapes(), str(bundle.path))
            if embeddings is None:   # the text tower computes [C, width] (and the cache keeps it)
                _check_head_size(bundle.num_classes, width, bundle.file_size, bundle.path)
                check_head_work(base_manifest, bundle.num_classes * len(head.templates), bundle.path)
            # from the stored shapes, before an int8/int4 head is dequantised
            _check_head_width(head, bundle.head_shapes(), embeddings.shape[1] if embeddings is not None else width,
                              bundle.path)
            head_state = bundle.head_state_dict()
            projector = cls(clip_model, base_manifest, bundle.class_names, head=head, encoder_lora=encoder_lora,
                            class_embeddings=embeddings, progress=progress)
            if embeddings is None and key is not None:
                head_cache.store(key, projector.text_embeddings)
            if encoder_lora:
                lora.load_state_dict(projector.visual, bundle.lora_state_dict())
            projector._load_head(head_state)
            projector.requires_grad_(False)
            projector.eval()
            if merge:
                projector.merge()
                projector._check_finite_weights(str(bundle.path))
            else:   # kept unmerged (exported, calibrated), but only if labelling would accept it merged
                copy.deepcopy(projector).merge()._check_finite_weights(str(bundle.path))
            return projector.to(device)

    @property
    def prior_weight(self) -> float:
        """``w``: the labels are ``(1 - w) * projector + w * zero-shot projector`` (0: the projector alone)."""
        return self.head_config.prior_weight

    def set_prior_weight(self, weight: float) -> None:
        """Mix ``weight`` of the zero-shot projector's logits into ``forward``'s (recorded as
        ``head.prior_weight``). Needs the deltas unmerged: it keeps a copy of the image tower without them."""
        head_config = _with_prior_weight(self.head_config, weight)   # checked before it is tested for truth
        weight = head_config.prior_weight
        if weight and self.merged:
            raise RuntimeError("set the prior weight before merging: the merged tower has lost its base weights")
        self.head_config = head_config
        self.prior_visual = lora.base_copy(self.visual) if weight and self.encoder_lora else None
        if self.prior_visual is not None:
            self.prior_visual.requires_grad_(False)
        self.register_buffer("prior_class_weights", self.text_embeddings.detach().clone() if weight else None,
                             persistent=False)

    def encode(self, images: torch.Tensor, *, zero_shot: bool = False) -> torch.Tensor:
        """Image features (fp32, L2-normalised when the head normalises) of float images in [0, 1];
        ``zero_shot``: the image tower's without its deltas (needs a prior weight)."""
        if zero_shot and self.prior_class_weights is None:
            raise RuntimeError("the zero-shot projector needs a prior weight (set_prior_weight before merging)")
        if not images.is_floating_point():
            raise TypeError(f"the projector takes float images in [0, 1], got {images.dtype}: "
                            "convert with images.float() / 255")
        x = images.to(self.mean.dtype)   # float64 input, or a projector made half: one dtype throughout
        if tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", antialias=True,
                              align_corners=False)
        zero_shot = zero_shot and self.prior_visual is not None   # without an encoder LoRA both are one tower
        compiled, tower = (self._prior_encoder, self.prior_visual) if zero_shot else (self._encoder, self.visual)
        encoder = compiled if compiled is not None else tower
        features = encoder((x - self.mean) / self.std)
        with torch.autocast(device_type=features.device.type, enabled=False):
            features = features.float()
            return F.normalize(features, dim=-1) if self.head_config.normalize_features else features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits: the projector's, mixed with the zero-shot projector's when there is a prior weight."""
        features = self.encode(images)
        logits = self._logits(features, self.class_weights())
        weight = self.prior_weight
        if not weight:
            return logits
        prior = features if self.prior_visual is None else self.encode(images, zero_shot=True)
        return (1 - weight) * logits + weight * self._logits(prior, self.prior_class_weights)

    def zero_shot(self, images: torch.Tensor) -> torch.Tensor:
        """The zero-shot projector's logits: the base and the text head, without any delta (needs a
        prior weight, which keeps the base weights)."""
        return self._logits(self.encode(images, zero_shot=True), self.prior_class_weights)

    def _logits(self, features: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=features.device.type, enabled=False):
            return self.log_logit_scale.float().exp() * features @ class_weights.t()

    def prepare_labelling(self, options: LabelOptions | dict | None = None) -> LabelOptions:
        """Set up ``label()``'s path for this device (``LabelOptions``; ``auto`` values resolved):
        channels_last weights, a compiled encoder. Returns the resolved options."""
        resolved = LabelOptions.of(options).resolve(self.mean.device, conv_base=conv_tower(self.visual))
        self.set_channels_last(resolved.channels_last)
        towers = {"_encoder": self.visual, "_prior_encoder": self.prior_visual}
        for attribute, tower in towers.items():
            object.__setattr__(self, attribute, torch.compile(tower) if resolved.compile and tower is not None else None)
        self._labelling = resolved
        return resolved

    def set_channels_last(self, enabled: bool) -> bool:
        """Keep the image towers' weights channels_last (NHWC) or contiguous; a conv's output follows its
        weight's layout, so every pass through them runs in it. Only a conv base changes (a ViT has no
        conv to speed up); returns whether the towers are now channels_last."""
        enabled = bool(enabled) and conv_tower(self.visual)
        for tower in (self.visual, self.prior_visual):
            if tower is not None:
                tower.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)
        return enabled

    def label(self, images: torch.Tensor) -> torch.Tensor:
        """Logits for a batch at inference speed (no gradients; the path ``prepare_labelling`` set up,
        by default bf16 + channels_last on CUDA, fp32 on CPU).

        The result is an ordinary fp32 tensor (cloned out of inference mode), so it can be a loss
        target; called inside the caller's own ``torch.inference_mode()`` it is an inference tensor, as
        everything made there is (batches to train on are made outside it). Labelling runs in eval mode
        (a third party's LoRA dropout never makes labels random) and the mode is restored. Labels of
        0-255 pixels are never returned (a value above ``MAX_UNIT_INPUT``: ValueError), nor non-finite
        logits: BundleError. A batch of more than
        ``limits.LABEL_CHUNK_PIXELS`` base pixels is labelled in chunks (the same logits up to
        floating-point rounding).
        """
        options = self._labelling or self.prepare_labelling()
        if not len(images):   # a rank's empty share of a short batch: a ViT's patch embedding cannot take none
            return torch.zeros(0, self.text_embeddings.shape[0], device=self.mean.device, dtype=torch.float32)
        rows = max(1, limits.LABEL_CHUNK_PIXELS // (self.image_size[0] * self.image_size[1]))
        training = self.training   # a mode switch walks every module: only when one is needed
        if training:
            self.train(False)
        try:
            with torch.inference_mode():
                images = images.to(self.mean.device, non_blocking=True)
                if options.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=options.precision == "bf16"):
                    logits = torch.cat([self(chunk).float() for chunk in images.split(rows)])
                # one synchronisation for both checks: every logit finite, and the input's range
                finite, low, high = torch.stack([torch.isfinite(logits).all().float(), images.amin().float(),
                                                 images.amax().float()]).tolist()
        finally:
            if training:
                self.train(True)
        if math.isfinite(high) and high > MAX_UNIT_INPUT:   # first: such pixels may also overflow the logits
            raise ValueError(f"the projector labels float images in [0, 1]; these reach {high:g} "
                             "(0-255 pixels: divide by 255)")
        if not finite:
            raise BundleError("the projector produced non-finite logits for this batch: "
                              + ("the input images hold NaN or infinite values" if not math.isfinite(low + high)
                                 else "its weights overflow on these images (rebuild the bundle)"))
        return logits.clone()

    def _check_finite_weights(self, where: str) -> None:
        """BundleError when a weight is not finite in float32: finite LoRA factors can overflow when
        merged, and so can an embedded base's float64 values when cast."""
        tensors = {"class weights": self.text_embeddings, **dict(self.visual.named_parameters())}
        for name, tensor in tensors.items():
            if not bool(torch.isfinite(tensor).all()):
                raise BundleError(f"{where}: the merged projector weight '{name}' is not finite: the bundle's "
                                  "base or LoRA overflows float32; rebuild the bundle")

    def class_weights(self) -> torch.Tensor:
        """``[C, d]``: text embeddings plus the head delta (precomputed once merged)."""
        if self.merged or self.head is None:
            return self.text_embeddings
        return self.text_embeddings + self.head.delta()

    def train(self, mode: bool = True) -> "Projector":
        """Batch norms stay in eval mode: the base's statistics must never drift."""
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def merge(self) -> "Projector":
        """Fold the encoder LoRA into its weights and the head delta into the class weights."""
        if self.merged:
            return self
        with torch.no_grad():
            if self.encoder_lora:
                lora.merge(self.visual)
            self.text_embeddings = self.class_weights().detach().clone()
        self.head = None
        self.merged = True
        return self

    def bundle_tensors(self, dtype: torch.dtype | str | None = None) -> dict[str, torch.Tensor]:
        """``encoder_lora.*`` and ``head.*`` tensors for ``write_bundle`` (dtype: the manifests'; the text
        head ``head.weight``, always float32, when the base is embedded as its image tower alone)."""
        if self.merged:
            raise RuntimeError("a merged projector has no separate LoRA weights to store")
        tensors = {}
        if self.base_manifest.get("embedded") == "visual":
            tensors[HEAD_WEIGHT] = self.text_embeddings.detach().to("cpu", torch.float32).contiguous()
        if self.encoder_lora:
            encoder_dtype = _dtype(dtype or self.encoder_lora.dtype)
            for key, value in lora.export_state_dict(self.visual, encoder_dtype).items():
                tensors[ENCODER_PREFIX + key] = value
        if self.head is not None:
            head_dtype = _dtype(dtype or self.head_config.lora.dtype)
            tensors[HEAD_A] = self.head.lora_A.detach().to("cpu", head_dtype).contiguous()
            tensors[HEAD_B] = self.head.lora_B.detach().to("cpu", head_dtype).contiguous()
        return tensors

    def manifest_sections(self, dtype: torch.dtype | str | None = None) -> dict:
        """The manifest ``base``, ``lora`` and ``head`` sections (dtype as in ``bundle_tensors``: a float
        one, so an int8/int4 section's ``group_size`` and ``shapes`` go)."""
        encoder, head = self.encoder_lora, self.head_config
        if encoder:
            encoder = dataclasses.replace(encoder, dtype=_dtype_name(dtype or encoder.dtype), group_size=None, shapes=None)
        if head.lora:
            head = dataclasses.replace(head, lora=dataclasses.replace(head.lora, dtype=_dtype_name(dtype or head.lora.dtype),
                                                                      group_size=None, shapes=None))
        head = dataclasses.replace(head, logit_scale=self.logit_scale)
        return {"base": dict(self.base_manifest), "lora": encoder.to_manifest() if encoder else None,
                "head": head.to_manifest()}

    def _load_head(self, state: dict[str, torch.Tensor]) -> None:
        if self.head is None:
            if state:
                raise ManifestError("the file has head.lora_* tensors but the manifest has no "
                                    "head.lora section: the file is inconsistent")
            return
        for name in ("lora_A", "lora_B"):
            if name not in state:
                raise ManifestError(f"tensor head.{name} is missing; the manifest's head.lora "
                                    "section needs it")
            expected = tuple(getattr(self.head, name).shape)
            if tuple(state[name].shape) != expected:
                raise ManifestError(f"tensor head.{name} has shape {list(state[name].shape)}, the "
                                    f"head needs {list(expected)}")
        unknown = sorted(state.keys() - {"lora_A", "lora_B"})
        if unknown:
            raise ManifestError(f"tensor head.{unknown[0]} is not a head weight")
        with torch.no_grad():
            self.head.lora_A.copy_(state["lora_A"].float())
            self.head.lora_B.copy_(state["lora_B"].float())


def _check_head_size(num_classes: int, width: int | None, file_size: int, path) -> None:
    """BaseModelError when the text head the base would compute, ``[C, width]``, has more than
    MAX_HEAD_VALUES values or more than the file has bytes: a custom config's ``embed_dim`` costs the
    file a few narrow projections, the head (and its cache entry) every class times it."""
    values = num_classes * (width or 0)
    bound = min(limits.MAX_HEAD_VALUES, file_size)
    if values > bound:
        raise BaseModelError(f"{path}: the text head would be {num_classes:,} classes x {width:,} = {values:,} values "
                             f"(at most {bound:,} for a {file_size:,}-byte file)")


def _check_head_width(head: HeadConfig, shapes: dict[str, tuple[int, ...]], width: int | None, path) -> None:
    """ManifestError unless a stored ``head.lora_A`` (``[r, d]``, its rank checked on open) is as wide as the
    class embeddings, before it is dequantised or ``HeadLoRA`` allocates ``r x width``: a ``[4096, 0]`` tensor
    stores nothing, and an int4 one's logical shape may be far larger than its bytes."""
    stored = shapes.get("lora_A")
    if head.lora is not None and stored is not None and width is not None and tuple(stored[1:]) != (width,):
        raise ManifestError(f"{path}: tensor 'head.lora_A' is {list(stored)}, but the base's class "
                            f"embeddings are {width} wide: expected [{head.lora.r}, {width}]")


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def _channel_vector(values: Sequence[float], device) -> torch.Tensor:
    return torch.tensor([float(v) for v in values], dtype=torch.float32, device=device).reshape(1, -1, 1, 1)


def _dtype(value: torch.dtype | str) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    dtype = getattr(torch, str(value), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ManifestError(f"LoRA dtype {value!r} is not a floating torch dtype (e.g. 'float16')")
    return dtype


def _dtype_name(value: torch.dtype | str) -> str:
    return str(_dtype(value)).removeprefix("torch.")
