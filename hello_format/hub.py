"""The Hugging Face Hub side of bundles: ``hf://`` URIs, cached verified downloads, pushes and pulls.

A hub URI uses huggingface_hub's own syntax, ``hf://[TYPE/]ORG/NAME[@REVISION]/PATH`` with TYPE one
of ``datasets/``, ``spaces/``, ``models/`` (default: model) and a revision (branch, tag, commit hash,
``refs/pr/N``; URL-encode other ``/`` as ``%2F``). Files come through ``hf_hub_download``, so its
cache, revision pinning and ``HF_HUB_OFFLINE`` mode all apply; a downloaded bundle's sha256 hashes
are checked before it is handed out.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub
from huggingface_hub import constants as hf_constants
from huggingface_hub import errors as hf_errors
from huggingface_hub.utils import validate_repo_id

from hello_format.errors import HubError, IntegrityError
from hello_format.files import atomic_target

REPO_TYPES = ("model", "dataset", "space")
_URI_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_LOGIN_HINT = "run `hf auth login` (or `huggingface-cli login`), set HF_TOKEN, or pass --token"


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


def is_hub_uri(path_or_uri: object) -> bool:
    """True for strings that start with ``hf://`` (everything else is treated as a local path)."""
    return isinstance(path_or_uri, str) and path_or_uri.startswith(hf_constants.HF_PROTOCOL)


def parse_hf_uri(uri: str) -> HubRef:
    """Split ``hf://[TYPE/]ORG/NAME[@REVISION]/PATH`` into a HubRef; HubError if it is not one file's URI."""
    if not is_hub_uri(uri):
        raise HubError(f"{uri!r} is not a hub URI: expected hf://[datasets/|spaces/]ORG/NAME[@REVISION]/PATH")
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
        raise _hub_error(exc, ref.uri) from None
    return Path(local)


def resolve(
    path_or_uri: str | Path,
    *,
    verify: bool = True,
    token: str | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """A local path for a bundle: local paths pass through; hub URIs are downloaded and (by default) verified."""
    if not is_hub_uri(path_or_uri):
        return Path(path_or_uri)
    ref = parse_hf_uri(str(path_or_uri))
    local = download(ref, token=token, cache_dir=cache_dir)
    if verify:
        verify_download(local, ref.uri)
    return local


def verify_download(local: Path, uri: str) -> None:
    """Check a downloaded bundle twice: the whole file against the hub's checksum (the cache blob's name),
    then every tensor against the manifest's sha256; HubError naming the file on a mismatch."""
    from hello_format.bundle import Bundle

    blob = local.resolve()
    expected = blob.name.lower()
    actual = _content_hash(blob, expected)
    if actual is not None and actual != expected:
        raise HubError(
            f"{uri}: hash mismatch after download: {blob} hashes to {actual[:12]}... but the hub's checksum is "
            f"{expected[:12]}...; the cached copy is corrupt: delete it and download again"
        )
    try:
        with Bundle.open(local, verify=True):
            pass
    except IntegrityError as exc:
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
        digest = hashlib.sha256()
    else:
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(b"blob %d\0" % blob.stat().st_size)
    with open(blob, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pull(uri: str, out_dir: str | Path, *, token: str | None = None, with_card: bool = True) -> list[Path]:
    """Download a bundle (verified) and, when the repo has one, its README.md into ``out_dir``; no loading."""
    ref = parse_hf_uri(uri)
    local = resolve(uri, token=token)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [_copy(local, out / Path(ref.path).name)]
    if with_card and ref.path != "README.md":
        card_ref = HubRef(ref.repo_type, ref.repo_id, ref.revision, "README.md")
        try:
            card = download(card_ref, token=token)
        except HubError:
            card = None  # a repo without a card (or not cached while offline) still pulls its bundle
        if card is not None:
            written.append(_copy(card, out / "README.md"))
    return written


def _copy(source: Path, target: Path) -> Path:
    """Copy through a temp file renamed over ``target``: a reader that has the old file mapped keeps
    it whole (overwriting in place would truncate it under the reader: SIGBUS)."""
    with atomic_target(target) as temp:
        shutil.copyfile(source, temp)
    return target


def require_token(token: str | None) -> str:
    """The token to upload with: ``token``, else HF_TOKEN / the cached login; HubError when there is none."""
    token = token or huggingface_hub.get_token()
    if not token:
        raise HubError(f"pushing needs a Hugging Face token with write access: {_LOGIN_HINT}")
    return token


@dataclass(frozen=True)
class UploadFolder:
    """The folder a push uploads: the bundle (byte-identical copy), its card and its preview image."""

    root: Path
    bundle: Path
    card: Path
    preview: Path
    base_embedded: bool


def write_upload_folder(
    bundle_path: str | Path,
    out_dir: str | Path,
    *,
    repo_id: str,
    repo_type: str = "dataset",
    revision: str | None = None,
    license: str = "other",
    eval_results: object = None,
) -> UploadFolder:
    """Write exactly what ``push`` would upload into the new or empty folder ``out_dir``; returns its files."""
    from hello_format import card
    from hello_format.bundle import Bundle

    check_repo(repo_id, repo_type)
    root = Path(out_dir)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise HubError(f"{root}: the upload folder must be new or empty; choose another directory")
    source = resolve(bundle_path)
    target = root / source.name
    with Bundle.open(source, verify=True) as bundle:
        text = card.render_card(
            bundle,
            uri=file_uri(repo_id, target.name, repo_type=repo_type, revision=revision),
            license=license,
            eval_results=eval_results,
            preview=card.PREVIEW_NAME,
        )
        image = card.render_preview(bundle)
        embedded = card.base_embedded(bundle)
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    (root / "README.md").write_text(text, encoding="utf-8")
    image.save(root / card.PREVIEW_NAME)
    return UploadFolder(root, target, root / "README.md", root / card.PREVIEW_NAME, embedded)


def check_repo(repo_id: str, repo_type: str) -> None:
    """HubError unless ``repo_id`` is a valid 'ORG/NAME' and ``repo_type`` one bundles can live in."""
    if repo_type not in REPO_TYPES:
        raise HubError(f"repo type {repo_type!r} is not one of {', '.join(REPO_TYPES)}")
    try:
        validate_repo_id(repo_id)
    except hf_errors.HFValidationError as exc:
        raise HubError(f"repo id {repo_id!r}: {str(exc).splitlines()[0]}") from None
    if repo_id.count("/") != 1:
        raise HubError(f"repo id {repo_id!r} must be 'ORG/NAME' (your user name or an organisation, then a name)")


@dataclass(frozen=True)
class PushResult:
    """What a push published: the bundle's hub URI, the commit that holds it, whether the base went along."""

    uri: str
    commit_url: str
    base_embedded: bool


def upload(
    folder: str | Path,
    repo_id: str,
    *,
    repo_type: str = "dataset",
    revision: str | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload .hello bundle",
) -> str:
    """Create the repo (and branch) if needed and upload ``folder`` as one commit; returns the commit URL."""
    token = require_token(token)
    check_repo(repo_id, repo_type)
    target = file_uri(repo_id, "", repo_type=repo_type, revision=revision).rstrip("/")
    api = huggingface_hub.HfApi(token=token, library_name="hello")
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        if revision is not None and not revision.startswith("refs/"):
            api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            repo_type=repo_type,
            revision=revision,
            commit_message=commit_message,
        )
    except Exception as exc:  # every huggingface_hub failure becomes one HubError line
        raise _hub_error(exc, target, uploading=True) from None
    return commit.commit_url


def push(
    bundle_path: str | Path,
    repo_id: str,
    *,
    repo_type: str = "dataset",
    revision: str | None = None,
    private: bool = False,
    token: str | None = None,
    license: str = "other",
    eval_results: object = None,
) -> PushResult:
    """Publish a bundle with its card and preview; the token is checked before anything touches the network."""
    token = require_token(token)
    with tempfile.TemporaryDirectory(prefix="hello-push-") as tmp:
        folder = write_upload_folder(
            bundle_path,
            Path(tmp) / "upload",
            repo_id=repo_id,
            repo_type=repo_type,
            revision=revision,
            license=license,
            eval_results=eval_results,
        )
        commit_url = upload(folder.root, repo_id, repo_type=repo_type, revision=revision, private=private, token=token)
    uri = file_uri(repo_id, folder.bundle.name, repo_type=repo_type, revision=revision)
    return PushResult(uri, commit_url, folder.base_embedded)


def _hub_error(exc: Exception, target: str, *, uploading: bool = False) -> HubError:
    """One actionable line for a huggingface_hub (or network) failure on ``target``."""
    if isinstance(exc, hf_errors.GatedRepoError):
        return HubError(f"{target}: the repository is gated: request access on its hub page, then {_LOGIN_HINT}")
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        return HubError(
            f"{target}: repository not found (or private and your token cannot see it): check the id and the "
            f"datasets/ or spaces/ prefix; if it is private, {_LOGIN_HINT}"
        )
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return HubError(f"{target}: revision not found: check the branch, tag or commit after '@'")
    if isinstance(exc, hf_errors.LocalEntryNotFoundError):
        if hf_constants.is_offline_mode():
            return HubError(
                f"{target}: not in the local hub cache and HF_HUB_OFFLINE=1 forbids downloading: "
                "unset HF_HUB_OFFLINE and fetch it once (e.g. `hello pull URI -o DIR`)"
            )
        return HubError(f"{target}: not in the local hub cache and the hub cannot be reached: check your connection")
    if isinstance(exc, hf_errors.EntryNotFoundError):
        return HubError(f"{target}: no such file in the repository at that revision: check the path after the repo id")
    if isinstance(exc, hf_errors.OfflineModeIsEnabled):
        return HubError(f"{target}: HF_HUB_OFFLINE=1 forbids network access: unset it to upload or download")
    if isinstance(exc, hf_errors.HfHubHTTPError) and exc.response.status_code in (401, 403):
        need = "write access" if uploading else "read access"
        return HubError(
            f"{target}: the hub refused the token (HTTP {exc.response.status_code}): it needs {need}; {_LOGIN_HINT}"
        )
    action = "upload" if uploading else "download"
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return HubError(f"{target}: {action} failed: {type(exc).__name__}: {detail}".rstrip(": "))
