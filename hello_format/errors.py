"""The exceptions ``hello`` raises on purpose; the CLI turns any :class:`HelloError` into one line."""


class HelloError(Exception):
    """Base of every error raised on purpose (the CLI prints ``error: <message>``, exit 2)."""


class BundleError(HelloError):
    """The file is not a valid ``.hello`` bundle (or writer input would not make one)."""


class HeaderError(BundleError):
    """The safetensors container is broken: header length, JSON, offsets, dtype/shape vs bytes."""


class ManifestError(BundleError):
    """The manifest is missing, invalid, or does not match the tensors."""


class UnsupportedVersionError(ManifestError):
    """The manifest's major format version is unknown to this reader."""


class IntegrityError(BundleError):
    """A sha256 (of the manifest or of a tensor) does not match."""


class ImageDecodeError(BundleError):
    """An image blob does not decode to the declared geometry."""


class BaseModelError(HelloError):
    """The CLIP base cannot be created or its weights have the wrong fingerprint."""


class HubError(HelloError):
    """A hub URI, download or upload problem."""


class HubFileNotFoundError(HubError):
    """No such file in the hub repository at that revision (offline: none in the local hub cache)."""


class HubCacheError(HubError):
    """A file in the local hub cache that is not a regular file of its repository's cache."""


class DeviceError(HelloError, ValueError):
    """A device that is not a torch device, or one this torch cannot use (CUDA asked of a CPU build)."""
