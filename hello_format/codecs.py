"""Image codecs: raw / png / jpeg / webp encoding and threaded decoding into one uint8 tensor (spec section 9),
at once or each image on first use (``LazyImages``)."""

import io
import os
import re
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

from hello_format import limits
from hello_format.errors import BundleError, ImageDecodeError
from hello_format.file_blobs import FileBlobs

CODECS = ("raw", "png", "jpeg", "webp")
DEFAULT_CODEC = "png"  # lossless: the bundle holds exactly the optimised pixels
LOSSY_CODECS = ("jpeg", "webp")
DEFAULT_QUALITY = 90
_MODES = {1: "L", 3: "RGB"}
_IN_MEMORY_FILE = re.compile(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>")
# the only Pillow plugin a blob of each codec may reach (a BMP, TIFF or EPS blob is not a PNG)
PILLOW_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


def check_codec(codec: str, quality: int | None) -> int | None:
    """Validate a codec name and its quality; return the quality to record (None for raw/png)."""
    if codec not in CODECS:
        raise BundleError(f"unknown image codec {codec!r}: choose one of {', '.join(CODECS)}")
    if codec not in LOSSY_CODECS:
        if quality is not None:
            raise BundleError(f"codec {codec!r} is lossless and takes no quality (got {quality})")
        return None
    quality = DEFAULT_QUALITY if quality is None else quality
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise BundleError(f"{codec} quality must be an integer in 1..100, got {quality!r}")
    return quality


def _encode_one(pixels: np.ndarray, codec: str, quality: int | None) -> bytes:
    channels = pixels.shape[0]
    array = pixels[0] if channels == 1 else np.ascontiguousarray(pixels.transpose(1, 2, 0))
    image = Image.fromarray(array)
    out = io.BytesIO()
    if codec == "png":
        image.save(out, format="PNG", compress_level=6, optimize=False)
    elif codec == "jpeg":
        image.save(out, format="JPEG", quality=quality, subsampling="4:2:0", optimize=False)
    else:
        image.convert("RGB").save(out, format="WEBP", quality=quality, method=4, lossless=False)
    return out.getvalue()


def encode_images(images: torch.Tensor, codec: str, quality: int | None = None, threads: int | None = None) -> list[bytes]:
    """Encode uint8 [N, C, H, W] images (C = 1 or 3) one blob per image, in parallel threads (Pillow's
    encoders release the GIL; each image's bytes are the same on any count); ``raw`` is not a blob codec."""
    if codec == "raw":
        raise BundleError("codec 'raw' stores the pixel tensor itself; it has no per-image blobs")
    quality = check_codec(codec, quality)
    pixels = as_image_tensor(images).numpy()
    blobs: list[bytes] = [b""] * pixels.shape[0]

    def encode_chunk(start: int, stop: int) -> None:
        for i in range(start, stop):
            blobs[i] = _encode_one(pixels[i], codec, quality)

    run_in_chunks(len(blobs), default_threads() if threads is None else max(1, int(threads)), encode_chunk)
    return blobs


def as_image_tensor(images: torch.Tensor) -> torch.Tensor:
    """Check images are uint8 [N, C, H, W] with C = 1 or 3; return them contiguous on the CPU."""
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        got = (f"{images.dtype} {list(images.shape)}" if isinstance(images, torch.Tensor)
               else type(images).__name__)
        raise BundleError(f"images must be a uint8 tensor [N, C, H, W], got {got}")
    if images.shape[1] not in _MODES:
        raise BundleError(f"images must have 1 or 3 channels, got {images.shape[1]}")
    return images.detach().cpu().contiguous()


def jpeg_scans_over_limit(stream) -> bool:
    """Whether the JPEG data of binary ``stream`` holds more than ``MAX_JPEG_SCANS`` scans (SOS markers,
    ``FF DA``, counted anywhere: each scan of a progressive JPEG walks the whole image, a cost its declared
    size does not bound), read a MiB at a time and no further than the count needs."""
    count, previous = 0, b""
    while chunk := stream.read(2**20):
        count += (previous + chunk).count(b"\xff\xda")   # previous: one byte, so a pair is counted once
        if count > limits.MAX_JPEG_SCANS:
            return True
        previous = chunk[-1:]
    return False


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_DEFLATE_MAX_RATIO = 1032   # the most bytes one compressed byte inflates to


def png_text_over_limit(data: bytes) -> bool:
    """Whether the text chunks of PNG ``data`` may hold more than ``MAX_PNG_TEXT_BYTES`` once read: tEXt
    counted as stored, zTXt and iTXt at deflate's largest ratio, from the chunks' headers alone (12 bytes
    a chunk, walked to IEND or the end of the data: Pillow reads the chunks after the pixels too)."""
    if not data.startswith(_PNG_SIGNATURE):
        return False   # not a PNG: Pillow refuses it
    total, at = 0, len(_PNG_SIGNATURE)
    while at + 8 <= len(data):
        length, kind = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8]
        total += length if kind == b"tEXt" else _DEFLATE_MAX_RATIO * length if kind in (b"zTXt", b"iTXt") else 0
        if total > limits.MAX_PNG_TEXT_BYTES:
            return True
        if kind == b"IEND":
            break
        at += 12 + length
    return False


def _decode_into(out: np.ndarray, index: int, blob, codec: str, channels: int, height: int, width: int, *,
                 number: int) -> None:
    """Decode one blob into ``out[index]`` with the codec's own Pillow plugin only, its size checked
    from the header before any pixel is decoded; errors name it image ``number``."""
    data = bytes(blob)   # one copy: BytesIO shares a bytes object's buffer
    if codec == "jpeg" and jpeg_scans_over_limit(io.BytesIO(data)):
        raise ImageDecodeError(f"image {number} is a JPEG of more than {limits.MAX_JPEG_SCANS} scans")
    if codec == "png" and png_text_over_limit(data):
        raise ImageDecodeError(f"image {number} is a PNG whose text chunks may hold more than "
                               f"{limits.MAX_PNG_TEXT_BYTES:,} bytes once inflated")
    try:
        with Image.open(io.BytesIO(data), formats=[PILLOW_FORMATS[codec]]) as image:
            if image.size != (width, height):
                raise ImageDecodeError(f"image {number} is {image.size[0]}x{image.size[1]}, the manifest "
                                       f"declares {width}x{height}")
            image = image.convert(_MODES[channels])
    except ImageDecodeError:
        raise
    except Exception as exc:  # Pillow raises many types for corrupt data
        message = _IN_MEMORY_FILE.sub("", " ".join(str(exc).split())[:200]).strip()   # not Pillow's object repr
        raise ImageDecodeError(f"image {number} does not decode as {codec}: {type(exc).__name__}: {message}") from None
    array = np.asarray(image)
    out[index] = array[None] if channels == 1 else array.transpose(2, 0, 1)


def _allocate(empty, shape):
    """``empty(shape)``, or a one-line BundleError when this machine cannot hold that many decoded bytes."""
    try:
        return empty(shape)
    except (MemoryError, RuntimeError) as exc:  # numpy's MemoryError, torch's "can't allocate" RuntimeError
        size = int(np.prod(shape, dtype=np.int64))
        raise BundleError(f"cannot allocate {size:,} bytes for the decoded images ({' x '.join(map(str, shape))}): "
                          f"{type(exc).__name__}") from None


def default_threads() -> int:
    """Coding threads (decode, encode) when none are asked for: the CPUs this process may use, at most 16."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(16, cpus or 1))


def decode_images(blobs, channels: int, height: int, width: int, threads: int | None = None, *,
                  codec: str, numbers: Sequence[int] | None = None) -> torch.Tensor:
    """Decode ``codec`` blobs (bytes-like, one per image) in parallel threads into uint8 [N, C, H, W]:
    as many threads as the decoders' scratch together allows (``limits.MAX_DECODE_SCRATCH_BYTES``).
    ``numbers``: how errors name each blob's image (default: its position)."""
    if channels not in _MODES:
        raise BundleError(f"images must have 1 or 3 channels, got {channels}")
    if codec not in PILLOW_FORMATS:
        raise BundleError(f"codec {codec!r} has no per-image blobs to decode")
    blobs = list(blobs)
    out = _allocate(lambda shape: np.empty(shape, dtype=np.uint8), (len(blobs), channels, height, width))
    threads = min(default_threads() if threads is None else max(1, int(threads)),
                  max(1, limits.MAX_DECODE_SCRATCH_BYTES // (limits.DECODE_SCRATCH_BYTES_PER_PIXEL[codec] * height * width)))

    def decode_chunk(start: int, stop: int) -> None:
        for i in range(start, stop):
            _decode_into(out, i, blobs[i], codec, channels, height, width,
                         number=i if numbers is None else numbers[i])

    run_in_chunks(len(blobs), threads, decode_chunk)
    return torch.from_numpy(out)


CHUNK_ITEMS = 1024   # at most this many items a chunk: threads that finish early take the next one


def run_in_chunks(count: int, threads: int, work) -> None:
    """``work(start, stop)`` over ``range(count)`` in contiguous chunks, about four a thread on ``threads``
    threads and at most ``CHUNK_ITEMS`` each (one future a chunk: a future per item would hold about a kB
    each, a GB for ImageNet's 1.28 M files); the first chunk's exception, in chunk order, is re-raised here."""
    chunk = min(CHUNK_ITEMS, max(1, -(-count // (threads * 4))))
    bounds = [(s, min(s + chunk, count)) for s in range(0, count, chunk)]
    if threads == 1 or len(bounds) <= 1:
        for start, stop in bounds:
            work(start, stop)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for future in [pool.submit(work, s, e) for s, e in bounds]:
                future.result()


_LAZY_IMAGES: "weakref.WeakSet[LazyImages]" = weakref.WeakSet()


def _unlock_after_fork() -> None:
    """A forked child (a DataLoader worker) gets every lock as the fork found it: one held by another
    thread (ds.loader's prefetch decoding) would never be released there."""
    for images in list(_LAZY_IMAGES):
        images._lock = threading.Lock()


if hasattr(os, "register_at_fork"):   # POSIX
    os.register_at_fork(after_in_child=_unlock_after_fork)


class LazyImages:
    """Encoded images (``blobs``: bytes-like, or ``FileBlobs`` read from the file when needed) as one
    resident uint8 [N, C, H, W] tensor whose rows are decoded on first use.

    Indexing (``images[indices]``) decodes the rows not yet decoded, in parallel threads, then reads
    them from the resident tensor: an epoch's first batches pay for their own images only, and the
    first batch comes without waiting for the whole set. A blob that does not decode fails the read
    that first needs it, with the decoder's one-line error prefixed by ``where``.
    """

    def __init__(self, blobs: Sequence, channels: int, height: int, width: int, *, codec: str,
                 device: torch.device | str = "cpu", where: str = "", numbers: Sequence[int] | None = None):
        if channels not in _MODES:
            raise BundleError(f"images must have 1 or 3 channels, got {channels}")
        if codec not in PILLOW_FORMATS:
            raise BundleError(f"codec {codec!r} has no per-image blobs to decode")
        self._blobs, self._codec, self._where = blobs if isinstance(blobs, FileBlobs) else list(blobs), codec, where
        self._numbers = list(range(len(self._blobs))) if numbers is None else list(numbers)
        self.shape = torch.Size((len(self._blobs), channels, height, width))
        self.device = torch.device(device)
        self._start_cache()

    def _start_cache(self) -> None:
        """An empty decoded cache (its pages are only taken as rows are decoded) and its lock."""
        self._pixels = _allocate(lambda shape: torch.empty(shape, dtype=torch.uint8, device=self.device), self.shape)
        self._decoded = torch.zeros(len(self._blobs), dtype=torch.bool)
        self._lock = threading.Lock()
        _LAZY_IMAGES.add(self)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, indices) -> torch.Tensor:
        """``indices`` (an int, or a tensor / sequence of ints) -> their pixels on ``self.device``."""
        rows = torch.as_tensor(indices, dtype=torch.long)
        flat = rows.cpu().reshape(-1)
        with self._lock:
            missing = flat[~self._decoded[flat]].unique()
            if len(missing):
                self._decode(missing)
        return self._pixels[rows.to(self.device)]

    def _decode(self, rows: torch.Tensor) -> None:
        chosen = rows.tolist()
        try:   # a FileBlobs read fails too when the file changed under it
            pixels = decode_images([self._blobs[i] for i in chosen], *self.shape[1:], codec=self._codec,
                                   numbers=[self._numbers[i] for i in chosen])
        except BundleError as exc:
            raise type(exc)(f"{self._where}: {exc}" if self._where else str(exc)) from None
        self._pixels[rows.to(self.device)] = pixels.to(self.device)
        self._decoded[rows] = True

    def to(self, device: torch.device | str) -> "LazyImages":
        """These images on ``device`` (self if already there); nothing is decoded."""
        if torch.device(device) == self.device:
            return self
        return LazyImages(self._blobs, *self.shape[1:], codec=self._codec, device=device, where=self._where,
                          numbers=self._numbers)

    def __getstate__(self) -> dict:
        """For DataLoader workers started by spawn: the blobs (file blobs as the file to open again, others as
        their bytes), not the lock nor the decoded cache. A worker decodes what it serves into a cache of its
        own, as a forked one does: sending the cache moved all of it, decoded or not, into /dev/shm at once
        (7.5 GB for ImageNet-1K at IPC 50)."""
        state = {key: value for key, value in self.__dict__.items() if key not in ("_lock", "_pixels", "_decoded")}
        state["_blobs"] = self._blobs if isinstance(self._blobs, FileBlobs) else [bytes(blob) for blob in self._blobs]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._start_cache()
