"""Publishing to the Hugging Face Hub: push a bundle with its card and preview, pull one into a folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub
from huggingface_hub import constants as hf_constants
from huggingface_hub import errors as hf_errors
from huggingface_hub.utils import validate_repo_id

from hello_format import limits
from hello_format.bundle import Bundle
from hello_format.errors import BundleError, HelloError, HubError, HubFileNotFoundError
from hello_format.files import (atomic_folder, atomic_targets, cannot_write_in, folders_made, nearest_existing,
                                read_bounded_text, replace_refusal, unnamed_folder)
from hello_format.hub import card
from hello_format.hub.resolver import (LOGIN_HINT, REPO_TYPES, HubRef, download, file_uri, hub_error, open_bundle,
                                       parse_hf_uri, resolve, snapshot_commit)
from hello_format.text import listed, shortened, terminal, warn

_CARD = "README.md"   # the repo's card; a pulled one is saved as card_name says
DEFAULT_REPO_TYPE = "dataset"   # where push publishes unless told (hello push --repo-type)


def pull(uri: str, out_dir: str | Path, *, token: str | None = None, with_card: bool = True,
         overwrite: bool = False) -> list[Path]:
    """Download a bundle and, when the repo has one, its README.md into ``out_dir``; no loading. The bundle's copy
    there is verified before it is put in place (``_copy_verified``). The card
    is saved as ``card_name`` says, beside the bundle, never over ``out_dir``'s own README.md; a card over
    MAX_CARD_BYTES, or one whose load lines do not name this bundle's path (another bundle's in the same repo,
    one hello did not write: card.bundle_paths), is skipped with one warning line. The folder and both targets
    are checked before anything is downloaded: an existing file there is replaced only with ``overwrite``
    (whatever it holds: it is not read). Both files are written or neither: both are written and flushed before
    either is renamed into place (only a failed rename could part them)."""
    ref = parse_hf_uri(uri)
    name = check_bundle_name(Path(ref.path).name)
    out = Path(out_dir)
    bundle_target, card_target = out / name, out / card_name(name)
    _check_folder(out)   # before anything is downloaded
    for target in (bundle_target, card_target) if with_card else (bundle_target,):
        _check_replaceable(target, overwrite)
    local = resolve(uri, token=token)
    # the card of the bundle's own commit: a branch that moved since would give another commit's card
    commit = snapshot_commit(local, ref.path) or ref.revision
    card_ref = HubRef(ref.repo_type, ref.repo_id, commit, _CARD)
    card_text = _fetch_card(card_ref, token) if with_card else None
    if card_text is not None and ref.path not in (loads := card.bundle_paths(card_text)):
        # saved as NAME.README.md, another bundle's card would pass for this one's
        warn(f"hello: {terminal(card_ref.uri)} is not the card of {shortened(ref.path)} ({_whose(loads)}): "
             "not pulled")
        card_text = None
    targets = [(bundle_target, lambda temp: _copy_verified(local, temp, ref.uri))]
    if card_text is not None:
        targets.append((card_target, lambda temp: temp.write_text(card_text, encoding="utf-8")))
    elif with_card and card_target.exists():   # beside the new bundle it would pass for this one's card
        warn(f"hello: {terminal(str(card_target))} is left from before: this pull brought no "
             "card for the bundle")
    try:
        # temp files renamed into place (a reader with an old file mapped keeps it whole; overwriting in
        # place would truncate it under the reader: SIGBUS), both written and flushed before either is
        # renamed, the bundle first, with SIGINT and SIGTERM held between the two renames
        with folders_made(out), atomic_targets(*(target for target, _ in targets)) as temps:
            for (_, write), temp in zip(targets, temps):
                write(temp)
    except OSError as exc:   # a failed rename names its target (filename2); a failed copy, the folder
        raise _write_error(Path(exc.filename2 or out), exc) from None
    return [target for target, _ in targets]


def _copy_verified(local: Path, temp: Path, uri: str) -> None:
    """``local`` (the verified cache file) copied to ``temp`` and the copy verified again: what is written is
    what was checked, even when the cache file is replaced between the check and the copy."""
    shutil.copyfile(local, temp)
    try:
        Bundle.open(temp, verify=True).close()
    except BundleError as exc:
        raise HubError(f"{uri}: the copy of {local} does not verify ({exc}): the cached file changed while it was "
                       "copied; pull again") from None


def _whose(paths: set[str]) -> str:
    """Whose card one that loads ``paths`` is, in a few words."""
    return f"it loads {listed(sorted(paths))}" if paths else "it loads no bundle"


def _check_folder(out: Path) -> None:
    """HubError unless ``out`` is a folder a file can be made in, or can be made where it is (the nearest
    folder above it that exists is one a file can be made in)."""
    existing = nearest_existing(out)
    if not existing.is_dir():
        raise HubError(f"{out}: cannot write there: {existing} is not a folder")
    reason = cannot_write_in(existing)
    if reason is not None:
        raise HubError(f"{out}: cannot write there: {reason}")


def _check_replaceable(target: Path, overwrite: bool) -> None:
    """HubError when a rename cannot put a file at ``target`` (a folder is there, or another user's file
    in a sticky folder such as /tmp), or a file is there and ``overwrite`` is not given."""
    try:
        found, folder = target.lstat(), target.parent.stat()
    except OSError:   # nothing there, or no folder to put it in: the write itself says why
        return
    if stat.S_ISDIR(found.st_mode):
        raise HubError(f"{target}: cannot write there: a folder is in the way")
    refusal = replace_refusal(target, overwrite)
    if refusal:
        raise HubError(refusal)
    me = os.geteuid() if hasattr(os, "geteuid") else None   # POSIX: a sticky folder's rule
    if me is not None and folder.st_mode & stat.S_ISVTX and me not in (0, found.st_uid, folder.st_uid):
        raise HubError(f"{target}: cannot write there: another user's file in a sticky folder")


def _fetch_card(card_ref: HubRef, token: str | None) -> str | None:
    """The text of the repo's README.md, or None: silently when it has none (offline: none is cached), with
    one warning line when it cannot be had (a hub failure, a cache copied from elsewhere) or is larger than
    MAX_CARD_BYTES, counted on what is read (online, its size is asked before it is downloaded)."""
    try:
        if not hf_constants.is_offline_mode() and not _card_fits(card_ref, _card_size(card_ref, token)):
            return None
        local = download(card_ref, token=token)
    except HubFileNotFoundError:   # no card: the bundle pulls alone
        return None
    except HubError as exc:   # a 503, a timeout, a refused token, a copied cache: not taken for no card
        warn(f"hello: {exc} (the card is not pulled)")
        return None
    if not _card_fits(card_ref, local.stat().st_size):
        return None
    try:   # what is read is bounded too: a size can lie (a file under /proc reports 0 bytes)
        return read_bounded_text(local, limits.MAX_CARD_BYTES)
    except ValueError as exc:   # too large, or not UTF-8 text
        warn(f"hello: {terminal(card_ref.uri)} {exc} (a card is UTF-8 text of at most "
             f"{limits.MAX_CARD_BYTES:,} bytes): not pulled")
        return None


@contextlib.contextmanager
def _hub_errors(target: str, *, uploading: bool = False):
    """Every huggingface_hub failure in the block becomes one HubError line; a HelloError passes as it is."""
    try:
        yield
    except HelloError:
        raise
    except Exception as exc:
        raise hub_error(exc, target, uploading=uploading) from None


def _card_size(card_ref: HubRef, token: str | None) -> int | None:
    """The card's size as the hub reports it, asked before it is downloaded."""
    url = huggingface_hub.hf_hub_url(card_ref.repo_id, card_ref.path, repo_type=card_ref.repo_type,
                                     revision=card_ref.revision)
    with _hub_errors(card_ref.uri):
        return huggingface_hub.get_hf_file_metadata(url, token=token).size


def _card_fits(card_ref: HubRef, size: int | None) -> bool:
    """Whether a card of ``size`` bytes (None: unknown) is pulled; one warning line when it is not."""
    if size is not None and size <= limits.MAX_CARD_BYTES:
        return True
    warn(f"hello: {terminal(card_ref.uri)} is {'of unknown size' if size is None else f'{size:,} bytes'} "
         f"(a card is at most {limits.MAX_CARD_BYTES:,}): not pulled")
    return False


def check_bundle_name(name: str) -> str:
    """``name``, or HubError when a bundle so named would collide with a card or preview beside it
    (README.md, preview.png, NAME.README.md; compared case-insensitively, as some file systems do)."""
    lowered = name.lower()
    if lowered in (_CARD.lower(), card.PREVIEW_NAME.lower()) or lowered.endswith("." + _CARD.lower()):
        raise HubError(f"a bundle may not be named {shortened(name)}: that is the name of a card or preview "
                       "beside it; rename it (e.g. NAME.hello)")
    return name


def card_name(bundle_path: str) -> str:
    """The local name of a pulled bundle's card: ``NAME.README.md`` for ``NAME.hello``, so pulling into
    a folder (``-o .``) never replaces the folder's own README.md, and two bundles keep their two cards."""
    return f"{Path(bundle_path).stem}.{_CARD}"


def require_token(token: str | None) -> str:
    """The token to upload with: ``token``, else HF_TOKEN / the cached login; HubError when there is none."""
    token = token or huggingface_hub.get_token()
    if not token:
        raise HubError(f"pushing needs a Hugging Face token with write access: {LOGIN_HINT}, or pass --token")
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
    repo_type: str = DEFAULT_REPO_TYPE,
    revision: str | None = None,
    license: str = card.DEFAULT_LICENSE,
    eval_results: object = None,
) -> UploadFolder:
    """Write exactly what ``push`` would upload into the new or empty folder ``out_dir``; returns its files."""
    check_repo(repo_id, repo_type, revision)
    card.check_license(license)   # before a bundle of gigabytes is copied and verified
    root = Path(out_dir)
    unnamed = unnamed_folder(root)
    if unnamed:
        raise HubError(f"{root}: {unnamed}")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise HubError(f"{root}: the upload folder must be new or empty; choose another directory")
    with open_bundle(bundle_path) as bundle:   # a missing or malformed file is named as the user gave it
        source = bundle.path
    target = root / check_bundle_name(source.name)
    try:
        with folders_made(root.parent), atomic_folder(root) as temp:   # all three files or none
            shutil.copyfile(source, temp / target.name)
            # the copy is what is verified and described: a file replaced at the path since cannot slip in
            with _named_as(source, temp / target.name), open_bundle(temp / target.name, verify=True) as bundle:
                text = card.render_card(
                    bundle,
                    uri=file_uri(repo_id, target.name, repo_type=repo_type, revision=revision),
                    license=license,
                    eval_results=eval_results,
                    preview=card.PREVIEW_NAME,
                )
                image = card.render_preview(bundle)
                embedded = card.base_embedded(bundle)
            (temp / _CARD).write_text(text, encoding="utf-8")
            image.save(temp / card.PREVIEW_NAME)
    except OSError as exc:
        raise _write_error(root, exc) from None
    return UploadFolder(root, target, root / _CARD, root / card.PREVIEW_NAME, embedded)


@contextlib.contextmanager
def _named_as(source: Path, copy: Path):
    """A HelloError about ``copy`` names ``source`` instead, the file the user gave."""
    try:
        yield
    except HelloError as exc:
        raise type(exc)(str(exc).replace(str(copy), str(source))) from None


def _write_error(where: Path, exc: OSError) -> HubError:
    return HubError(f"{where}: cannot write there: {exc.strerror or exc}")


def check_repo(repo_id: str, repo_type: str, revision: str | None = None) -> None:
    """HubError unless ``repo_id`` is a valid 'ORG/NAME', ``repo_type`` one bundles can live in and
    ``revision`` (when given) a name git accepts for a branch, as the hub then must."""
    if revision is not None:
        refusal = _branch_name_refusal(revision)
        if refusal:
            raise HubError(f"revision {shortened(revision)}: {refusal}")
    if repo_type not in REPO_TYPES:
        raise HubError(f"repo type {repo_type!r} is not one of {', '.join(REPO_TYPES)}")
    try:
        validate_repo_id(repo_id)
    except hf_errors.HFValidationError as exc:
        raise HubError(f"repo id {repo_id!r}: {str(exc).splitlines()[0]}") from None
    if repo_id.count("/") != 1:
        raise HubError(f"repo id {repo_id!r} must be 'ORG/NAME' (your user name or an organisation, then a name)")


def _branch_name_refusal(name: str) -> str | None:
    """Why git would refuse ``name`` as a branch (``git check-ref-format --branch``'s rules), or None."""
    if any(ord(c) < 0x20 or c in "\x7f ~^:?*[\\" for c in name):
        return "a branch name holds no space, control character or any of ~ ^ : ? * [ \\"
    parts = name.split("/")
    if name in ("", "@", "HEAD") or name.startswith("-") or name.endswith(".") or "" in parts:
        return "not a branch name: empty, '@', 'HEAD', a leading '-', a trailing '.' or an empty part between slashes"
    if ".." in name or "@{" in name or any(part.startswith(".") or part.endswith(".lock") for part in parts):
        return "a branch name holds no '..' or '@{', and no part of it starts with '.' or ends with '.lock'"
    return None


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
    repo_type: str = DEFAULT_REPO_TYPE,
    revision: str | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload .hello bundle",
    replace_card: bool = False,
) -> str:
    """Create the repo (and branch) if needed and upload ``folder`` as one commit; returns the commit URL.
    A new repo is private with ``private``, else as the hub's default for its owner makes it; ``private``
    refuses an existing public repo before anything is uploaded. So is, unless ``replace_card``, a repo
    whose README.md the folder's would replace and which is not a card of the bundles the folder's names
    (another bundle's card in the same repo, or one hello did not write)."""
    token = require_token(token)
    check_repo(repo_id, repo_type, revision)
    target = file_uri(repo_id, "", repo_type=repo_type, revision=revision).rstrip("/")
    api = huggingface_hub.HfApi(token=token, library_name="hello")
    with _hub_errors(target, uploading=True):
        # None, not False: a new repository gets the hub's default (an organisation's may be private)
        api.create_repo(repo_id, repo_type=repo_type, private=True if private else None, exist_ok=True)
        if private and not api.repo_info(repo_id, repo_type=repo_type).private:
            raise HubError(f"{target}: the repository exists and is public, and --private does not change that: "
                           "make it private on its hub page, or push without --private")
        if not replace_card and (Path(folder) / _CARD).is_file():
            _check_card_replaceable(api, Path(folder) / _CARD, HubRef(repo_type, repo_id, revision, _CARD), token,
                                    target)
        if revision is not None and not revision.startswith("refs/"):
            api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            repo_type=repo_type,
            revision=revision,
            commit_message=commit_message,
        )
    return commit.commit_url


def _check_card_replaceable(api, card_path: Path, card_ref: HubRef, token: str, target: str) -> None:
    """HubError unless the repo's README.md at ``card_ref`` (a branch yet to be made: the default branch's,
    which it starts from) is missing or a card of only bundles that ``card_path``, the card uploaded,
    names too. Its size is asked first: a README.md over MAX_CARD_BYTES is no card hello wrote."""
    try:
        found = api.get_paths_info(card_ref.repo_id, [_CARD], repo_type=card_ref.repo_type, revision=card_ref.revision)
    except hf_errors.RevisionNotFoundError:
        card_ref = HubRef(card_ref.repo_type, card_ref.repo_id, None, _CARD)
        found = api.get_paths_info(card_ref.repo_id, [_CARD], repo_type=card_ref.repo_type)
    if not found:
        return
    ours = _card_paths(card_path)
    size = getattr(found[0], "size", None)
    try:
        if size is not None and size > limits.MAX_CARD_BYTES:
            raise ValueError(f"holds {size:,} bytes, more than a card")
        text = read_bounded_text(download(card_ref, token=token), limits.MAX_CARD_BYTES)
    except ValueError as exc:
        whose = f"it {exc}"
    else:
        theirs = card.bundle_paths(text)
        if theirs and theirs <= ours:
            return
        whose = _whose(theirs)
    what = listed(sorted(ours)) if ours else "the bundle pushed"
    raise HubError(f"{target}: its README.md is not the card of {what} ({whose}): a push replaces README.md and "
                   "preview.png; pass --replace-card to replace them, or push to another repository or --revision")


def _card_paths(card_path: Path) -> set[str]:
    """``card.bundle_paths`` of a local card; none when it is no card hello would read."""
    try:
        return card.bundle_paths(read_bounded_text(card_path, limits.MAX_CARD_BYTES))
    except ValueError:
        return set()


def push(
    bundle_path: str | Path,
    repo_id: str,
    *,
    repo_type: str = DEFAULT_REPO_TYPE,
    revision: str | None = None,
    private: bool = False,
    token: str | None = None,
    license: str = card.DEFAULT_LICENSE,
    eval_results: object = None,
    replace_card: bool = False,
) -> PushResult:
    """Publish a bundle with its card and preview; the repo id and licence, then the token are checked
    before anything touches the network. A README.md in the repo that is not this bundle's card is replaced
    only with ``replace_card``."""
    check_repo(repo_id, repo_type, revision)   # a typo is said before the user is sent to log in
    card.check_license(license)
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
        commit_url = upload(folder.root, repo_id, repo_type=repo_type, revision=revision, private=private, token=token,
                            replace_card=replace_card)
    uri = file_uri(repo_id, folder.bundle.name, repo_type=repo_type, revision=revision)
    return PushResult(uri, commit_url, folder.base_embedded)
