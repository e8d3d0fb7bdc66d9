"""Reading from the Hugging Face Hub: ``hf://`` URIs become local files, downloaded and verified once.

A hub URI uses huggingface_hub's own syntax, ``hf://[TYPE/]ORG/NAME[@REVISION]/PATH`` with TYPE one
of ``datasets/``, ``spaces/``, ``models/`` (default: model) and a revision (branch, tag, commit hash,
``refs/pr/N``; URL-encode other ``/`` as ``%2F``). Files come through ``hf_hub_download``, so its
cache, revision pinning and ``HF_HUB_OFFLINE`` mode all apply.

``resolve`` is the one place a URI becomes a local path: local paths pass through untouched; a hub
file is downloaded and every tensor's sha256 is checked, a single pass over the file. Only when that
check fails is the whole file hashed against the hub's own checksum, to say whether the download or
the upload is corrupt. ``open_bundle`` is ``Bundle.open`` for either kind of path (a hub file is not
hashed again). huggingface_hub is imported only when a hub URI is met.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from hello_format.bundle import Bundle
from hello_format.digests import file_digest, file_sha256
from hello_format.errors import BundleError, HubCacheError, HubError, HubFileNotFoundError, IntegrityError
from hello_format.text import shortened, terminal

HF_PROTOCOL = "hf://"
REPO_TYPES = ("model", "dataset", "space")
_URI_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LOGIN_HINT = "run `hf auth login` (or `huggingface-cli login`) or set HF_TOKEN"   # every reader takes these


def is_hub_uri(path_or_uri: object) -> bool:
    """True for strings that start with ``hf://`` (everything else is treated as a local path)."""
    return isinstance(path_or_uri, str) and path_or_uri.startswith(HF_PROTOCOL)


def resolve(path_or_uri: str | os.PathLike, *, token: str | None = None,
            cache_dir: str | os.PathLike | None = None) -> Path:
    """The local file behind ``path_or_uri``; a hub file is downloaded (cached) and verified (HubError)."""
    if not is_hub_uri(path_or_uri):
        return Path(path_or_uri)
    ref = parse_hf_uri(path_or_uri)
    local = download(ref, token=token, cache_dir=cache_dir)
    verify_download(local, ref.uri).close()
    return local


def open_bundle(path_or_uri: str | os.PathLike, *, verify: bool = False) -> Bundle:
    """``Bundle.open`` of a local path or an ``hf://`` URI; ``verify`` checks a local file's hashes
    (a hub file is always verified, once: the bundle returned is the one its download was checked in)."""
    if not is_hub_uri(path_or_uri):
        return Bundle.open(path_or_uri, verify=verify)
    ref = parse_hf_uri(path_or_uri)
    return verify_download(download(ref), ref.uri)


@dataclass(frozen=True)
class HubRef:
    """One file in a hub repository: where it lives and at which revision (None: the default branch)."""

    repo_type: str
    repo_id: str
    revision: str | None
    path: str

    @property
    def uri(self) -> str:
        """The canonical ``hf://`` form of this reference."""
        return file_uri(self.repo_id, self.path, repo_type=self.repo_type, revision=self.revision)


def file_uri(repo_id: str, path: str, *, repo_type: str = "model", revision: str | None = None) -> str:
    """``hf://`` URI of ``path`` in a repo (revisions other than ``refs/pr/N`` get their ``/`` encoded)."""
    rev = ""
    if revision is not None:
        special = revision.startswith(("refs/pr/", "refs/convert/"))
        rev = "@" + (revision if special else revision.replace("/", "%2F"))
    return f"hf://{_URI_PREFIX[repo_type]}{repo_id}{rev}/{path}"


def parse_hf_uri(uri: str) -> HubRef:
    """Split ``hf://[TYPE/]ORG/NAME[@REVISION]/PATH`` into a HubRef; HubError if it is not one file's URI."""
    if not is_hub_uri(uri):
        raise HubError(f"{uri!r} is not a hub URI: expected hf://[datasets/|spaces/]ORG/NAME[@REVISION]/PATH")
    import huggingface_hub
    from huggingface_hub import errors as hf_errors

    try:
        parsed = huggingface_hub.parse_hf_uri(uri)
    except hf_errors.HfUriError as exc:
        raise HubError(f"bad hub URI {uri!r}: {exc.msg.strip()}") from None
    if parsed.type not in REPO_TYPES:
        raise HubError(f"bad hub URI {uri!r}: only model, datasets/ and spaces/ repositories hold bundles")
    if not parsed.path_in_repo or parsed.path_in_repo.endswith("/"):
        raise HubError(
            f"bad hub URI {uri!r}: it names no file; add the file's path, e.g. hf://datasets/ORG/NAME/bundle.hello"
        )
    return HubRef(parsed.type, parsed.id, parsed.revision, parsed.path_in_repo)


def download(ref: HubRef, *, token: str | None = None, cache_dir: str | Path | None = None) -> Path:
    """The local path of ``ref`` through ``hf_hub_download`` (cached; honours HF_HUB_OFFLINE). No hash check."""
    import huggingface_hub

    try:
        local = huggingface_hub.hf_hub_download(
            ref.repo_id,
            ref.path,
            repo_type=ref.repo_type,
            revision=ref.revision,
            token=token,
            cache_dir=cache_dir,
            library_name="hello",
        )
    except Exception as exc:  # every huggingface_hub failure becomes one HubError line
        raise hub_error(exc, ref.uri) from None
    return _check_cached(Path(local), ref)


def _check_cached(local: Path, ref: HubRef) -> Path:
    """``local``, or HubError unless it is a regular file that, in huggingface_hub's cache layout
    (``REPO/snapshots/<commit>/PATH``, a link to ``REPO/blobs/``), lies inside its repository's folder:
    a cache copied from elsewhere cannot make a pull read ``/dev/zero`` or the process's environment."""
    real = Path(os.path.realpath(local))
    parts, depth = local.parts, len(Path(ref.path).parts)
    inside = len(parts) >= depth + 2 and parts[-depth - 2] == "snapshots"
    repo = Path(os.path.realpath(Path(*parts[:-depth - 2]))) if inside else None
    if not real.is_file() or (repo is not None and repo not in real.parents):
        raise HubCacheError(f"{terminal(ref.uri)}: the cached file {shortened(str(local))} leads to {shortened(str(real))}, "
                       "not to a file of its repository's cache; remove it from the cache and pull again")
    return local


def snapshot_commit(local: Path, path_in_repo: str) -> str | None:
    """The commit a file ``hf_hub_download`` returned belongs to: the ``snapshots/<commit>/`` folder its
    path is in (huggingface_hub's cache layout), or None where the path is not laid out so."""
    parts, depth = Path(local).parts, len(Path(path_in_repo).parts)
    if len(parts) < depth + 2 or parts[-depth - 2] != "snapshots":
        return None
    commit = parts[-depth - 1]
    return commit if len(commit) == 40 and all(c in "0123456789abcdef" for c in commit) else None


def verify_download(local: Path, uri: str) -> Bundle:
    """The downloaded bundle, opened and checked in one pass: every tensor against the manifest's sha256
    (the caller closes it). Only when that fails is the whole file hashed against the hub's checksum (the
    cache blob's name), to say whether the download or the upload is corrupt; HubError naming the file."""
    try:
        return Bundle.open(local, verify=True)
    except BundleError as exc:
        blob = local.resolve()
        expected = blob.name.lower()
        actual = _content_hash(blob, expected)
        if actual is not None and actual != expected:
            raise HubError(
                f"{uri}: hash mismatch after download: {blob} hashes to {actual[:12]}... but the hub's checksum is "
                f"{expected[:12]}...; the cached copy is corrupt: delete it and download again"
            ) from None
        if not isinstance(exc, IntegrityError):
            raise
        if actual is None:  # no hub checksum to tell a bad download from a bad upload
            advice = f"delete {blob} and download again; if that does not help, the upload itself is corrupt"
        else:
            advice = "the download matches the hub's checksum, so the upload itself is corrupt: ask for a new push"
        raise HubError(f"{uri}: hash mismatch in the published file ({exc}); {advice}") from None


def _content_hash(blob: Path, expected: str) -> str | None:
    """The file's hash in the form the hub cache names blobs by: sha256 for LFS/xet files (64 hex digits),
    git's blob sha1 for regular git files (40); None when the blob is not named by a hash."""
    if not re.fullmatch(r"[0-9a-f]{64}|[0-9a-f]{40}", expected):
        return None
    if len(expected) == 64:
        return file_sha256(blob)
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(b"blob %d\0" % blob.stat().st_size)
    return file_digest(blob, digest)


def hub_error(exc: Exception, target: str, *, uploading: bool = False) -> HubError:
    """One actionable line for a huggingface_hub (or network) failure on ``target``."""
    from huggingface_hub import constants as hf_constants
    from huggingface_hub import errors as hf_errors

    if isinstance(exc, hf_errors.GatedRepoError):
        return HubError(f"{target}: the repository is gated: request access on its hub page, then {LOGIN_HINT}")
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        return HubError(
            f"{target}: repository not found (or private and your token cannot see it): check the id and the "
            f"datasets/ or spaces/ prefix; if it is private, {LOGIN_HINT}"
        )
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return HubError(f"{target}: revision not found: check the branch, tag or commit after '@'")
    if isinstance(exc, hf_errors.LocalEntryNotFoundError):
        if hf_constants.is_offline_mode():
            return HubFileNotFoundError(
                f"{target}: not in the local hub cache and HF_HUB_OFFLINE=1 forbids downloading: "
                "unset HF_HUB_OFFLINE for one run that downloads it; it is read from the cache offline after"
            )
        return HubError(f"{target}: not in the local hub cache and the hub cannot be reached: check your connection")
    if isinstance(exc, hf_errors.EntryNotFoundError):
        return HubFileNotFoundError(f"{target}: no such file in the repository at that revision: check the path "
                                    "after the repo id")
    if isinstance(exc, hf_errors.OfflineModeIsEnabled):
        return HubError(f"{target}: HF_HUB_OFFLINE=1 forbids network access: unset it to upload or download")
    if isinstance(exc, hf_errors.HfHubHTTPError) and exc.response.status_code in (401, 403):
        need = "write access" if uploading else "read access"
        return HubError(
            f"{target}: the hub refused the token (HTTP {exc.response.status_code}): it needs {need}; {LOGIN_HINT}"
        )
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if _unreachable(exc):
        return HubError(f"{target}: the hub cannot be reached ({type(exc).__name__}: {detail}): "
                        "check your connection")
    action = "upload" if uploading else "download"
    return HubError(f"{target}: {action} failed: {type(exc).__name__}: {detail}".rstrip(": "))


def _unreachable(exc: Exception) -> bool:
    """Whether no answer came from the hub: a connection error of the HTTP client (httpx's or its fork's
    TransportError: refused, unresolved, timed out) or of the OS, not an HTTP status."""
    return isinstance(exc, (ConnectionError, TimeoutError)) or any(
        cls.__name__ == "TransportError" for cls in type(exc).__mro__)
