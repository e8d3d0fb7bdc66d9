"""Bundle.open / write_bundle: the .hello file as a whole (spec sections 2, 3, 7, 8, 11).

The writer is deterministic and atomic and validates everything first; the reader is lazy (one
small header read, tensors mapped with mmap on demand) and validates header and manifest on open.
"""

import copy
import dataclasses
import os
import pathlib

import numpy as np
import torch

from hello_format import codecs
from hello_format.consistency import (BASE_PREFIX, ENCODER_PREFIX, HEAD_A, HEAD_B, HEAD_WEIGHT, IMAGES_DATA,
                                      IMAGES_OFFSETS, LABELS, check_consistency)
from hello_format.container import (DTYPES, Header, dtype_name, encode_header, read_header, strict_json_loads,
                                    tensor_bytes, write_container)
from hello_format.digests import buffer_sha256
from hello_format.errors import BundleError, IntegrityError, ManifestError
from hello_format.file_blobs import FileBlobs, OpenFile
from hello_format.files import atomic_target, missing_folder, names_a_folder
from hello_format.generator import EncoderLoraConfig, HeadConfig
from hello_format.manifest import (canonical_json, manifest_sha256, validate_manifest,
                                   with_version)
from hello_format.quantize import SCALES_SUFFIX, check_scales, dequantise, is_quantised
from hello_format.text import quoted_name, shortened

MANIFEST_KEY = "hello.manifest"
MANIFEST_SHA_KEY = "hello.manifest.sha256"
_FINITE_CHUNK = 1 << 22
_ENCODE_CHUNK = 256   # images encoded at a time by write_bundle
_DECODE_CHECK_BYTES = 1 << 26   # decoded bytes check_images holds at a time
PROJECTOR_PREFIXES = (ENCODER_PREFIX, "head.", BASE_PREFIX)   # the tensors labels are computed from
HEAD_TENSORS = (HEAD_A, HEAD_B, HEAD_A + SCALES_SUFFIX, HEAD_B + SCALES_SUFFIX)


@dataclasses.dataclass(frozen=True)
class Storage:
    """Where a bundle's bytes go, next to the soft labels it replaces (spec section 11)."""
    images_bytes: int              # the images and their class labels: what a bundle's samples take
    label_generator_bytes: int     # encoder LoRA + head LoRA
    base_bytes: int                # embedded base weights and stored text head (0 unless embedded)
    header_bytes: int
    file_bytes: int
    stored_label_bytes: int        # N * recipe.epochs * C * 2 (fp16 soft labels, SRe2L/FKD style)
    ratio: float | None            # stored_label_bytes / label_generator_bytes
    other_bytes: int = 0           # tensors this version does not define (a later one's): with the four parts, file_bytes

    def versus(self) -> str:
        """The stored soft labels against the label generator, as people read it: one decimal, or two
        significant digits below 0.1 (a small bundle's labels may be 1.2x, or 0.046x, its generator)."""
        if self.ratio is None:
            return "no label generator to compare"
        return f"{self.ratio:,.1f}x the label generator" if self.ratio >= 0.1 else f"{self.ratio:.2g}x the label generator"


def stored_label_bytes(images: int, epochs: int, classes: int) -> int:
    """What SRe2L/FKD-style stored soft labels take: fp16 logits for every image, class and epoch."""
    return images * epochs * classes * 2


def _local_path(path: "str | os.PathLike") -> pathlib.Path:
    """``path`` as a local file path; a hub URI is refused (hello_format.hub.resolver turns it into one)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"a bundle path must be str or os.PathLike, got {type(path).__name__}")
    if isinstance(path, str) and path.startswith("hf://"):
        raise BundleError(f"{path}: Bundle.open reads local files; open a hub URI with "
                          "hello_format.open_bundle (downloaded and verified once)")
    if not os.fspath(path):   # pathlib makes "" the current folder: ".: not a file"
        raise BundleError("the bundle path is empty: name a .hello file")
    return pathlib.Path(os.fspath(path))


def check_finite(where: str, name: str, tensor: torch.Tensor) -> None:
    """BundleError when a floating-point tensor holds NaN or an infinity (in chunks: no big copy), or
    a quantised delta's scales are out of bounds."""
    if not tensor.is_floating_point():
        return
    if name.endswith(SCALES_SUFFIX):
        check_scales(where, name, tensor)
    flat = tensor.reshape(-1)
    for start in range(0, flat.numel(), _FINITE_CHUNK):
        if not bool(torch.isfinite(flat[start:start + _FINITE_CHUNK]).all()):
            raise BundleError(f"{where}: tensor {quoted_name(name)} holds NaN or infinite values: the label generator "
                              "would produce non-finite labels; rebuild the bundle")


# ----------------------------------------------------------------------------------------- writer

def _writer_tensors(tensors: dict | None) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in (tensors or {}).items():
        if not (name.startswith((ENCODER_PREFIX, BASE_PREFIX)) or name in HEAD_TENSORS or name == HEAD_WEIGHT):
            raise BundleError(f"tensor '{name}': write_bundle takes only encoder_lora.*, head.lora_A, "
                              f"head.lora_B (each with its .scales when quantised), head.weight and base.* tensors")
        if not isinstance(tensor, torch.Tensor):
            raise BundleError(f"tensor '{name}' is a {type(tensor).__name__}, not a torch.Tensor")
        dtype_name(tensor.dtype)
        out[name] = tensor.detach().cpu().contiguous()
    return out


def _image_tensors(images: torch.Tensor, codec: str, quality: int | None) -> dict[str, torch.Tensor]:
    if codec == "raw":
        return {IMAGES_DATA: images}
    # encoded a chunk at a time onto one growing buffer, so the encoded images are held about once: a list
    # of every blob, b"".join of it and a bytearray of that held them three times over (ImageNet-1K at IPC
    # 50 is 4 GB of PNGs: 10 GB on top of the 7.5 GB of pixels being written)
    data, offsets = bytearray(), np.zeros(len(images) + 1, dtype=np.int64)
    for start in range(0, len(images), _ENCODE_CHUNK):
        for i, blob in enumerate(codecs.encode_images(images[start:start + _ENCODE_CHUNK], codec, quality),
                                 start=start + 1):
            data += blob
            offsets[i] = len(data)
    data = torch.frombuffer(data, dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)
    return {IMAGES_DATA: data, IMAGES_OFFSETS: torch.from_numpy(offsets)}


def _complete_manifest(manifest: dict, images: torch.Tensor, codec: str, quality: int | None) -> dict:
    if not isinstance(manifest, dict):
        raise ManifestError(f"manifest must be a dict, got {type(manifest).__name__}")
    out = with_version(copy.deepcopy(manifest))
    n, c, h, w = images.shape
    given = out.get("images") if isinstance(out.get("images"), dict) else {}
    out["images"] = {**given, "count": n, "channels": c, "height": h, "width": w,
                     "codec": codec, "quality": quality}
    out["integrity"] = {"algorithm": "sha256", "tensors": {}}   # _write_checked fills it
    return out


def _output_path(path) -> pathlib.Path:
    """``path`` as the file a bundle is written to; BundleError when it names a folder (an existing one,
    or a trailing separator, which pathlib would drop and so write a file named like the folder)."""
    if names_a_folder(path):
        raise BundleError(f"{os.fspath(path)}: names a folder; give the bundle's file name")
    return pathlib.Path(os.fspath(path))


def _atomic_write(path: pathlib.Path, metadata: dict[str, str], tensors: dict[str, torch.Tensor]) -> None:
    """Write to a hidden temp file beside ``path`` and rename it over ``path`` (files.atomic_target):
    never a partial file, and no temp file left behind by an error, SIGINT or SIGTERM."""
    missing = missing_folder(path)
    if missing:
        raise BundleError(f"{path}: {missing}")
    try:
        with atomic_target(path) as temp, open(temp, "wb") as file:
            write_container(file, metadata, tensors)
    except OSError as exc:
        raise BundleError(f"{path}: write failed: {exc.strerror or exc}") from None


def write_bundle(path, manifest: dict, images: torch.Tensor, labels: torch.Tensor,
                 tensors: dict[str, torch.Tensor] | None = None, codec: str = codecs.DEFAULT_CODEC,
                 quality: int | None = None) -> pathlib.Path:
    """Validate, then write a .hello file deterministically and atomically; return its path.

    ``manifest`` is everything but ``images`` (filled from ``images``) and ``integrity`` (computed);
    unknown fields are kept. ``tensors`` holds encoder_lora.*, head.lora_A/B, head.weight and base.* tensors.
    """
    path = _output_path(path)
    where = str(path)
    quality = codecs.check_codec(codec, quality)
    images = codecs.as_image_tensor(images)
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.dtype.is_floating_point \
            or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise BundleError(f"{where}: labels must be an integer tensor [N]")
    extra = _writer_tensors(tensors)
    # the manifest is checked before the (slow) encoding, then again with the real hashes
    validate_manifest(_complete_manifest(manifest, images, codec, quality), where)
    all_tensors = {**extra, LABELS: labels.detach().cpu().to(torch.int64).contiguous(),
                   **_image_tensors(images, codec, quality)}
    return _write_checked(path, _complete_manifest(manifest, images, codec, quality), all_tensors, extra)


def write_stored(path, manifest: dict, tensors: dict[str, torch.Tensor]) -> pathlib.Path:
    """Write a bundle from tensors as a bundle stores them (images already encoded, e.g. another
    bundle's; any tensor name) and a manifest with its ``images`` section: the integrity is
    recomputed and everything checked as ``write_bundle`` does, atomically."""
    path = _output_path(path)
    if not isinstance(manifest, dict):
        raise ManifestError(f"manifest must be a dict, got {type(manifest).__name__}")
    checked = {name: t for name, t in tensors.items() if name.startswith(PROJECTOR_PREFIXES)}
    return _write_checked(path, copy.deepcopy(manifest), dict(tensors), checked)


def _write_checked(path: pathlib.Path, manifest: dict, all_tensors: dict[str, torch.Tensor],
                   checked: dict[str, torch.Tensor]) -> pathlib.Path:
    """Hash, validate (bounds against the file's size, schema, consistency, ``checked`` finite), write."""
    where = str(path)
    hashes = {name: buffer_sha256(tensor_bytes(t)) for name, t in sorted(all_tensors.items())}
    full = {**manifest, "integrity": {"algorithm": "sha256", "tensors": hashes}}
    text = canonical_json(full)
    metadata = {"format": "hello", MANIFEST_KEY: text, MANIFEST_SHA_KEY: manifest_sha256(text)}
    file_size = len(encode_header(metadata, all_tensors)) + sum(t.numel() * t.element_size()
                                                                 for t in all_tensors.values())
    validate_manifest(full, where, file_size)   # as a reader will: bounds against the file's size
    shapes = {name: (dtype_name(t.dtype), tuple(t.shape)) for name, t in all_tensors.items()}
    check_consistency(where, full, shapes, all_tensors.__getitem__)
    for name, tensor in sorted(checked.items()):
        check_finite(where, name, tensor)
    _atomic_write(path, metadata, all_tensors)
    return path


# ----------------------------------------------------------------------------------------- reader

def _read_manifest(where: str, metadata: dict[str, str], file_size: int) -> dict:
    if metadata.get("format") != "hello":
        raise ManifestError(f"{where}: a safetensors file but not a .hello bundle "
                            f"(__metadata__ 'format' is {shortened(metadata.get('format'))}, expected 'hello')")
    for key in (MANIFEST_KEY, MANIFEST_SHA_KEY):
        if key not in metadata:
            raise ManifestError(f"{where}: __metadata__ has no '{key}'")
    text = metadata[MANIFEST_KEY]
    if manifest_sha256(text) != metadata[MANIFEST_SHA_KEY]:
        raise IntegrityError(f"{where}: the manifest does not match '{MANIFEST_SHA_KEY}' "
                             f"(the file is corrupted: re-download or rebuild it)")
    try:
        manifest = strict_json_loads(text)
    except (ValueError, RecursionError) as exc:
        raise ManifestError(f"{where}: the manifest is not valid JSON ({str(exc)[:200]})") from None
    validate_manifest(manifest, where, file_size)
    return manifest


class Bundle:
    """An open .hello file: the manifest in memory, tensors mapped lazily from disk."""

    def __init__(self, path: pathlib.Path, header: Header, manifest: dict, data: np.memmap, file: OpenFile):
        self.path = path
        self.manifest = manifest
        self._header = header
        self._data = data
        self._file = file   # lazy_images reads from it, long after the mapping is dropped
        self._verified: set[str] = set()   # tensors whose sha256 was checked against the manifest
        self._finite = False   # check_finite passed: verify() then the projector's verify_projector() read them once

    @classmethod
    def open(cls, path, *, verify: bool = False) -> "Bundle":
        """Open and validate a local bundle file (header, manifest hash, schema, tensors); optionally
        verify every hash. ``hello_format.open_bundle`` also takes ``hf://`` URIs."""
        path = _local_path(path)
        where = str(path)
        if not path.is_file():
            raise BundleError(f"{where}: no such file" if not path.exists() else f"{where}: not a file")
        try:
            file = open(path, "rb")
        except OSError as exc:
            raise BundleError(f"{where}: cannot read: {exc.strerror or exc}") from None
        with file:   # the header, the mapping and later reads from one open file: a file renamed over the
            header = read_header(path, file)   # path between them cannot pair this manifest with its bytes
            manifest = _read_manifest(where, header.metadata, header.file_size)
            try:
                data = np.memmap(file, dtype=np.uint8, mode="c")
            except (OSError, ValueError) as exc:
                raise BundleError(f"{where}: cannot map the file: {exc}") from None
            try:
                kept = OpenFile(file, path)
            except OSError as exc:   # no descriptor left (EMFILE)
                raise BundleError(f"{where}: cannot keep the file open: {exc.strerror or exc}") from None
        bundle = cls(path, header, manifest, data, kept)
        shapes = {name: (info.dtype, info.shape) for name, info in header.tensors.items()}
        check_consistency(where, manifest, shapes, bundle._verified_tensor)
        if verify:
            bundle.verify()
        return bundle

    @property
    def manifest_sha256(self) -> str:
        """The sha256 of the manifest, which holds every tensor's sha256: the bundle's identity (as its
        header records it, checked when the bundle was opened)."""
        return self._header.metadata[MANIFEST_SHA_KEY]

    @property
    def file_size(self) -> int:
        """The file's size in bytes, as its header was read: what the reader's bounds scale with."""
        return self._header.file_size

    @property
    def image_shape(self) -> tuple[int, int, int, int]:
        """``(count, channels, height, width)`` of the stored images, as the manifest declares them
        (nothing decoded)."""
        images = self.manifest["images"]
        return images["count"], images["channels"], images["height"], images["width"]

    def __enter__(self) -> "Bundle":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Bundle({str(self.path)!r}, {self.num_images} images, {self.num_classes} classes)"

    def close(self) -> None:
        """Drop this bundle's mapping and file; tensors and lazy images already returned stay valid (they
        keep what they read from alive)."""
        self._data = self._file = None

    # --- manifest views
    @property
    def class_names(self) -> list[str]:
        return list(self.manifest["class_names"])

    @property
    def class_folders(self) -> list[str]:
        """The image folder each class came from, in class order (``provenance.class_folders``, else
        the class names): how an image folder's classes are matched to the bundle's, by name."""
        return list(self.manifest["provenance"].get("class_folders") or self.manifest["class_names"])

    @property
    def num_classes(self) -> int:
        return len(self.manifest["class_names"])

    @property
    def ipc(self) -> int | None:
        return self.manifest["ipc"]

    @property
    def num_images(self) -> int:
        return self.manifest["images"]["count"]

    # --- tensors
    @property
    def tensor_names(self) -> list[str]:
        return list(self._header.tensors)

    def _bytes(self, name: str) -> np.ndarray:
        if self._data is None:
            raise BundleError(f"{self.path}: the bundle is closed")
        info = self._header.tensors.get(name)
        if info is None:
            raise BundleError(f"{self.path}: no tensor {quoted_name(name)}")
        start = self._header.data_start
        return self._data[start + info.begin:start + info.end]

    def tensor(self, name: str) -> torch.Tensor:
        """A tensor by name, backed by the file's copy-on-write mapping (copied only if misaligned)."""
        raw = self._bytes(name)
        info = self._header.tensors[name]
        torch_dtype, itemsize = DTYPES[info.dtype]
        if not info.nbytes:   # nothing to map (a copy of an empty slice has stride 0, which torch cannot view)
            return torch.empty(info.shape, dtype=torch_dtype)
        if (self._header.data_start + info.begin) % itemsize:
            raw = np.array(raw)
        return torch.from_numpy(raw).view(torch_dtype).reshape(info.shape)

    @property
    def labels(self) -> torch.Tensor:
        """The images' labels, a copy in memory (8 bytes an image): they outlive the mapping's use."""
        return self.tensor(LABELS).clone()

    def images(self, threads: int | None = None, indices=None) -> torch.Tensor:
        """All images as uint8 [N, C, H, W], or those at ``indices`` (integer positions, or a boolean mask;
        decoding no other): mapped (raw) or decoded in ``threads`` threads."""
        spec = self.manifest["images"]
        if indices is not None:
            indices = self._positions(indices)
        if spec["codec"] == "raw":
            data = self.tensor(IMAGES_DATA)
            return data if indices is None else data[indices]
        blobs, numbers = self._image_blobs(), None if indices is None else indices.tolist()
        if numbers is not None:
            blobs = [blobs[i] for i in numbers]
        return self._decode(blobs, numbers, threads)

    def check_images(self, threads: int | None = None) -> None:
        """Decode every image once and keep none (ImageDecodeError naming the first that fails): what
        ``hello verify`` checks. A chunk of at most 64 MiB decoded at a time, where ``images()`` holds them
        all (ImageNet-1K at IPC 50, 224 px: 7.5 GB). Raw images have nothing to decode."""
        spec = self.manifest["images"]
        if spec["codec"] == "raw":
            return
        step = max(1, _DECODE_CHECK_BYTES // (spec["channels"] * spec["height"] * spec["width"]))
        blobs = self._image_blobs()
        for start in range(0, spec["count"], step):
            stop = min(spec["count"], start + step)
            self._decode(blobs[start:stop], range(start, stop), threads)

    def _decode(self, blobs, numbers, threads: int | None) -> torch.Tensor:
        """``codecs.decode_images`` of ``blobs`` (the file's images ``numbers``; None: from 0), its errors
        prefixed by the file's path."""
        spec = self.manifest["images"]
        try:
            return codecs.decode_images(blobs, spec["channels"], spec["height"], spec["width"], threads,
                                        codec=spec["codec"], numbers=numbers)
        except BundleError as exc:
            raise type(exc)(f"{self.path}: {exc}") from None

    def _positions(self, indices) -> torch.Tensor:
        """``indices`` as int64 positions of images: a 1-D integer sequence within the count, or a boolean
        mask of the count's length; anything else is an IndexError."""
        try:
            positions = torch.as_tensor(indices)
        except (TypeError, ValueError, RuntimeError):
            positions = None
        count = self.num_images
        if positions is not None and positions.dtype == torch.bool and positions.shape == (count,):
            return positions.nonzero().flatten()
        if positions is not None and positions.shape == (0,):   # [] is a float tensor: no image
            return torch.zeros(0, dtype=torch.long)
        if positions is None or positions.dim() != 1 or positions.dtype.is_floating_point or positions.dtype.is_complex \
                or positions.dtype == torch.bool:
            raise IndexError(f"image indices must be a 1-D sequence of integers or a boolean mask of {count:,}, "
                             f"got {shortened(indices)}")
        if len(positions) and not (0 <= int(positions.min()) and int(positions.max()) < count):
            raise IndexError(f"image indices must be in [0, {count:,}), got {int(positions.min())} to {int(positions.max())}")
        return positions.long()

    def lazy_images(self, device: torch.device | str = "cpu", rows: torch.Tensor | None = None
                    ) -> "torch.Tensor | codecs.LazyImages":
        """The images at ``rows`` (a bool mask; default all) as ``codecs.LazyImages`` (each read from the file
        and decoded on first use, on ``device``; errors name its number in the file), or the tensor when
        stored raw, copied into memory. Neither reads through the mapping, since a training run outlives it
        (a file rewritten or truncated in place under a mapping kills the reader: SIGBUS); a file changed
        in place fails the next read that needs it instead (``file_blobs``)."""
        spec = self.manifest["images"]
        if spec["codec"] == "raw":
            stored = self.tensor(IMAGES_DATA)
            return (stored.clone() if rows is None else stored[rows]).to(device)
        numbers = np.arange(spec["count"]) if rows is None else torch.nonzero(rows).flatten().cpu().numpy()
        offsets = self.tensor(IMAGES_OFFSETS).numpy()   # a closed bundle's: "the bundle is closed"
        start = self._header.data_start + self._header.tensors[IMAGES_DATA].begin
        blobs = FileBlobs(self._file, start + offsets[numbers], start + offsets[numbers + 1])
        return codecs.LazyImages(blobs, spec["channels"], spec["height"], spec["width"],
                                 codec=spec["codec"], device=device, where=str(self.path), numbers=numbers.tolist())

    def _image_blobs(self) -> list[memoryview]:
        """Each image's encoded bytes, as views of the mapping."""
        data, offsets = self._bytes(IMAGES_DATA), self.tensor(IMAGES_OFFSETS).tolist()
        return [memoryview(data[offsets[i]:offsets[i + 1]]) for i in range(len(offsets) - 1)]

    def _with_prefix(self, prefix: str) -> dict[str, torch.Tensor]:
        return {n[len(prefix):]: self.tensor(n) for n in self.tensor_names if n.startswith(prefix)}

    def lora_state_dict(self) -> dict[str, torch.Tensor]:
        """Encoder LoRA with peft adapter-file keys (``base_model.model.<path>.lora_A.weight``);
        int8/int4 deltas dequantised to float32 (spec 3.3), each call anew."""
        lora = EncoderLoraConfig.from_manifest(self.manifest["lora"])
        if lora is None or not is_quantised(lora.dtype):
            return self._with_prefix(ENCODER_PREFIX)
        return {key: self._dequantised(ENCODER_PREFIX + key, shape, lora) for key, shape in lora.shapes.items()}

    def lora_shapes(self) -> dict[str, tuple[int, ...]]:
        """The encoder LoRA's peft keys and the shapes ``lora_state_dict`` gives them, read from the
        header and manifest alone (nothing dequantised)."""
        return self._delta_shapes(EncoderLoraConfig.from_manifest(self.manifest["lora"]),
                                  [n for n in self.tensor_names if n.startswith(ENCODER_PREFIX)], ENCODER_PREFIX)

    def head_shapes(self) -> dict[str, tuple[int, ...]]:
        """The head LoRA's keys and the shapes ``head_state_dict`` gives them, read from the header and
        manifest alone (nothing dequantised)."""
        return self._delta_shapes(HeadConfig.from_manifest(self.manifest["head"]).lora,
                                  [n for n in (HEAD_A, HEAD_B) if n in self._header.tensors], "head.")

    def _delta_shapes(self, lora, names: list[str], prefix: str) -> dict[str, tuple[int, ...]]:
        """Int8/int4 deltas' logical shapes from the manifest (their stored tensors are packed), else
        the header's shapes of ``names``, keyed without ``prefix``."""
        if lora is not None and is_quantised(lora.dtype):
            return {key: tuple(shape) for key, shape in lora.shapes.items()}
        return {n[len(prefix):]: tuple(self._header.tensors[n].shape) for n in names}

    def head_state_dict(self) -> dict[str, torch.Tensor]:
        """``{"lora_A": [r_h, d], "lora_B": [C, r_h]}`` (int8/int4 dequantised to float32), or ``{}``
        for a zero-shot head."""
        lora = HeadConfig.from_manifest(self.manifest["head"]).lora
        if lora is not None and is_quantised(lora.dtype):
            return {key: self._dequantised("head." + key, shape, lora) for key, shape in lora.shapes.items()}
        return {n.split(".", 1)[1]: self.tensor(n) for n in (HEAD_A, HEAD_B) if n in self._header.tensors}

    def _dequantised(self, name: str, shape, config) -> torch.Tensor:
        return dequantise(str(self.path), name, self.tensor(name), self.tensor(name + SCALES_SUFFIX), shape,
                          config.dtype, config.group_size)

    def head_weight(self) -> torch.Tensor | None:
        """The stored text head ``[C, d]`` (``base.embedded == "visual"``), or None: the base computes it."""
        return self.tensor(HEAD_WEIGHT) if HEAD_WEIGHT in self._header.tensors else None

    def base_state_dict(self) -> dict[str, torch.Tensor] | None:
        """The embedded open_clip state dict, or None when the base is not embedded."""
        return self._with_prefix(BASE_PREFIX) or None

    # --- integrity and size
    def _verify_tensor(self, name: str) -> None:
        if name in self._verified:
            return
        expected = self.manifest["integrity"]["tensors"][name]
        actual = buffer_sha256(self._bytes(name))
        if actual != expected:
            raise IntegrityError(f"{self.path}: tensor {quoted_name(name)} is corrupted (sha256 {actual[:12]}... "
                                 f"!= {expected[:12]}... in the manifest): re-download or rebuild it")
        self._verified.add(name)

    def _verified_tensor(self, name: str) -> torch.Tensor:
        """A small tensor read on open (labels, image offsets): hash-checked before it is trusted."""
        self._verify_tensor(name)
        return self.tensor(name)

    def verify(self) -> None:
        """Check every tensor's sha256 against the manifest (IntegrityError naming the tensor), then
        that every tensor feeding the projector is finite (BundleError)."""
        for name in self.tensor_names:
            self._verify_tensor(name)
        self.check_finite()

    def verify_projector(self) -> None:
        """Check the sha256 of every tensor feeding the projector (those not checked yet), then that they
        are finite: what building a projector from a bundle opened without ``verify`` needs."""
        for name in self.tensor_names:
            if name.startswith(PROJECTOR_PREFIXES):
                self._verify_tensor(name)
        self.check_finite()

    def check_finite(self) -> None:
        """BundleError unless every floating encoder_lora.*, head.* and base.* tensor is finite."""
        if self._finite:
            return
        for name in self.tensor_names:
            if name.startswith(PROJECTOR_PREFIXES):
                check_finite(str(self.path), name, self.tensor(name))
        self._finite = True

    def storage(self) -> Storage:
        """The storage breakdown (spec section 11)."""
        def total(predicate) -> int:
            return sum(i.nbytes for n, i in self._header.tensors.items() if predicate(n))

        generator = total(lambda n: n.startswith(ENCODER_PREFIX) or n in HEAD_TENSORS)   # not unknown head.* names
        stored = stored_label_bytes(self.num_images, self.manifest["recipe"]["epochs"], self.num_classes)
        images = total(lambda n: n in (IMAGES_DATA, IMAGES_OFFSETS, LABELS))
        base = total(lambda n: n.startswith(BASE_PREFIX) or n == HEAD_WEIGHT)
        tensors = total(lambda n: True)
        return Storage(
            images_bytes=images,
            label_generator_bytes=generator,
            base_bytes=base,
            header_bytes=self._header.data_start,
            file_bytes=self._header.data_start + tensors,
            stored_label_bytes=stored,
            ratio=stored / generator if generator else None,
            other_bytes=tensors - images - generator - base,
        )
