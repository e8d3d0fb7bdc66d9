"""hf:// URIs, resolution through a locally populated huggingface_hub cache (offline), push/pull folders."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
from click.testing import CliRunner
from huggingface_hub import constants as hf_constants
from PIL import Image

from hello_format import hub, limits
from hello_format import open_bundle
from hello_format.bundle import Bundle
from hello_format.cli import cli
from hello_format.hub.cli import pull as pull_command
from hello_format.hub.cli import push as push_command
from hello_format.digests import buffer_sha256
from hello_format.errors import BundleError, HubError
from hello_format.hub import resolver
import hello_format.bundle as bundle_module
from support import COMMIT, cache_file, make_bundle, split_card

OTHER_COMMIT = "b" * 40


def card_of(path: str, heading: str = "# a card") -> bytes:
    """A card whose load line names the bundle at ``path`` of org/tiny, as render_card writes it."""
    return f'{heading}\n\n```python\nds = HelloDataset("hf://datasets/org/tiny/{path}")\n```\n'.encode()


# ------------------------------------------------------------------------------------------ URIs

@pytest.mark.parametrize("uri, ref", [
    ("hf://datasets/org/name/file.hello", hub.HubRef("dataset", "org/name", None, "file.hello")),
    ("hf://org/name/file.hello", hub.HubRef("model", "org/name", None, "file.hello")),
    ("hf://models/org/name/file.hello", hub.HubRef("model", "org/name", None, "file.hello")),
    ("hf://spaces/org/name/a/b/c.hello", hub.HubRef("space", "org/name", None, "a/b/c.hello")),
    ("hf://datasets/org/name@v1.0/sub/f.hello", hub.HubRef("dataset", "org/name", "v1.0", "sub/f.hello")),
    (f"hf://datasets/org/name@{COMMIT}/f.hello", hub.HubRef("dataset", "org/name", COMMIT, "f.hello")),
    ("hf://datasets/org/name@refs%2Fpr%2F1/f.hello", hub.HubRef("dataset", "org/name", "refs/pr/1", "f.hello")),
    ("hf://datasets/org/name@refs/pr/12/f.hello", hub.HubRef("dataset", "org/name", "refs/pr/12", "f.hello")),
    ("hf://org/name@feature%2Fx/f.hello", hub.HubRef("model", "org/name", "feature/x", "f.hello")),
    ("hf://org/name/dir/f@2.hello", hub.HubRef("model", "org/name", None, "dir/f@2.hello")),
])
def test_parse_hf_uri(uri, ref):
    assert hub.parse_hf_uri(uri) == ref
    assert hub.parse_hf_uri(ref.uri) == ref  # the canonical form parses back to the same reference


@pytest.mark.parametrize("uri, words", [
    ("hf://", "Empty body"),
    ("hf://org/name", "names no file"),
    ("hf://datasets/org/name/", "names no file"),
    ("hf://datasets/org", "namespace/name"),
    ("hf://dataset/org/name/f.hello", "plural"),
    ("hf://buckets/org/name/f.hello", "only model, datasets/ and spaces/"),
    ("hf://org/name@/f.hello", "Empty revision"),
    ("hf://org/name/a//b.hello", "empty segments"),
    ("hf://org/na--me/f.hello", "Cannot have -- or .."),
    ("datasets/org/name/f.hello", "is not a hub URI"),
])
def test_bad_uris_are_hub_errors(uri, words):
    with pytest.raises(HubError) as info:
        hub.parse_hf_uri(uri)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_a_hub_that_cannot_be_reached_is_said_alike_for_uploads_and_downloads():
    """push said "upload failed: ConnectError: ..." where pull said the hub cannot be reached."""
    import importlib

    client = next(importlib.import_module(name) for name in ("httpx2", "httpx")
                  if importlib.util.find_spec(name) is not None)   # huggingface_hub's HTTP client (its fork from 2.x)
    for exc in (client.ConnectError("[Errno -2] Name or service not known"), client.ReadTimeout("timed out"),
                ConnectionRefusedError(111, "Connection refused")):
        for uploading in (False, True):
            message = str(resolver.hub_error(exc, "hf://datasets/org/name", uploading=uploading))
            assert message.startswith(f"hf://datasets/org/name: the hub cannot be reached ({type(exc).__name__}: ")
            assert message.endswith("): check your connection") and "\n" not in message
    assert "upload failed: ValueError: odd" in str(resolver.hub_error(ValueError("odd"), "x", uploading=True))


def test_the_declared_huggingface_hub_floor_parses_hub_uris_as_the_resolver_does():
    """pyproject allowed huggingface_hub 0.23, which has no parse_hf_uri (a hub URI met an AttributeError).
    parse_hf_uri and errors.HfUriError came in 1.13; 1.16 is the first whose parser keeps an '@' in a file's
    name literal (the last URI above), bisected on PyPI's wheels with this file's URI cases."""
    declared = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert '"huggingface_hub>=1.16",' in declared
    assert tuple(int(part) for part in huggingface_hub.__version__.split(".")[:2]) >= (1, 16)


def test_is_hub_uri_and_local_passthrough(tmp_path):
    assert hub.is_hub_uri("hf://datasets/org/name/f.hello")
    assert not hub.is_hub_uri("datasets/org/name/f.hello")
    assert not hub.is_hub_uri(Path("hf:/x"))
    assert hub.resolve(tmp_path / "missing.hello") == tmp_path / "missing.hello"
    assert hub.resolve(str(tmp_path / "a.hello")) == tmp_path / "a.hello"


# -------------------------------------------------------------------------- the huggingface_hub cache

@pytest.fixture
def bundle_bytes(tmp_path):
    (tmp_path / "src").mkdir()
    return make_bundle(tmp_path / "src" / "tiny.hello").read_bytes()


def test_hf_hub_download_finds_the_locally_cached_file(hub_cache, bundle_bytes):
    pointer = cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    got = huggingface_hub.hf_hub_download("org/tiny", "tiny.hello", repo_type="dataset")
    assert Path(got) == pointer and Path(got).read_bytes() == bundle_bytes


def test_open_bundle_accepts_hub_uris(hub_cache, bundle_bytes, tmp_path):
    cache_file(hub_cache, "org/tiny", "nested/dir/tiny.hello", bundle_bytes)
    with Bundle.open(tmp_path / "src" / "tiny.hello") as local, \
            open_bundle("hf://datasets/org/tiny/nested/dir/tiny.hello") as remote:
        assert remote.manifest == local.manifest
        assert remote.path.read_bytes() == bundle_bytes
        assert str(hub_cache) in str(remote.path)


def test_requantize_reads_a_hub_uri(hub_cache, bundle_bytes, tmp_path):
    """As every other command: it said 'Bundle.open reads local files' and named the Python API."""
    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    out = tmp_path / "int8.hello"
    result = CliRunner().invoke(cli, ["requantize", "hf://datasets/org/tiny/tiny.hello", str(out), "--delta-dtype", "int8"])
    assert result.exit_code == 0, result.output
    with Bundle.open(out, verify=True) as written, Bundle.open(tmp_path / "src" / "tiny.hello") as source:
        assert written.manifest["lora"]["dtype"] == "int8" and written.class_names == source.class_names


def test_revisions_select_snapshots(hub_cache, bundle_bytes, tmp_path):
    other = make_bundle(tmp_path / "other.hello", ipc=2).read_bytes()
    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)  # main -> COMMIT
    cache_file(hub_cache, "org/tiny", "tiny.hello", other, commit=OTHER_COMMIT, ref="v2")
    with open_bundle("hf://datasets/org/tiny/tiny.hello") as main:
        assert main.ipc == 4
    with open_bundle(f"hf://datasets/org/tiny@{OTHER_COMMIT}/tiny.hello") as pinned:
        assert pinned.ipc == 2
    with open_bundle("hf://datasets/org/tiny@v2/tiny.hello") as tagged:
        assert tagged.ipc == 2
    assert hub.resolve(f"hf://datasets/org/tiny@{COMMIT}/tiny.hello").read_bytes() == bundle_bytes


def test_bundle_open_reads_local_files_only(hub_cache, bundle_bytes):
    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    with pytest.raises(BundleError, match="Bundle.open reads local files.*open_bundle"):
        Bundle.open("hf://datasets/org/tiny/tiny.hello")


def test_a_hub_file_is_hashed_once(hub_cache, bundle_bytes, monkeypatch):
    """Opening (and verifying) a hub bundle reads its tensors' bytes through sha256 once, and the whole
    file is hashed against the hub's checksum only when that check fails."""
    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    hashed = []
    monkeypatch.setattr(bundle_module, "buffer_sha256", lambda buffer: hashed.append(len(buffer)) or buffer_sha256(buffer))
    monkeypatch.setattr(resolver, "file_sha256", lambda path: pytest.fail("the whole file was hashed"))
    with open_bundle("hf://datasets/org/tiny/tiny.hello", verify=True) as bundle:
        storage = bundle.storage()
    tensor_bytes = storage.file_bytes - storage.header_bytes
    # every tensor once; on top, only the small labels/offsets that each open re-checks (before: twice + the file)
    assert tensor_bytes <= sum(hashed) < 1.2 * tensor_bytes


@pytest.mark.parametrize("uri", ["hf://datasets/org/tiny/absent.hello", "hf://datasets/org/absent/tiny.hello",
                                 "hf://org/tiny/tiny.hello", "hf://datasets/org/tiny@nobranch/tiny.hello"])
def test_offline_and_not_cached_is_one_clear_error(hub_cache, bundle_bytes, uri):
    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    with pytest.raises(HubError) as info:
        open_bundle(uri)
    message = str(info.value)
    assert message.startswith(uri) and "HF_HUB_OFFLINE=1" in message and "\n" not in message


@pytest.mark.parametrize("lfs", [True, False])
def test_corrupted_cached_bundle_is_a_hash_mismatch(hub_cache, bundle_bytes, lfs, tmp_path):
    pointer = cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes, lfs=lfs)
    assert open_bundle("hf://datasets/org/tiny/tiny.hello").num_images == 12  # intact: it loads
    blob = pointer.resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    uri = "hf://datasets/org/tiny/tiny.hello"
    for attempt in (lambda: open_bundle(uri), lambda: hub.resolve(uri), lambda: hub.pull(uri, tmp_path / "out")):
        with pytest.raises(HubError, match="hash mismatch after download") as info:
            attempt()
        assert str(blob) in str(info.value) and "\n" not in str(info.value)


def tensor_span(data, name):
    """(start, end) byte offsets of tensor ``name`` in a safetensors file's bytes."""
    header_len = int.from_bytes(data[:8], "little")
    begin, end = json.loads(data[8:8 + header_len])[name]["data_offsets"]
    return 8 + header_len + begin, 8 + header_len + end


def test_published_file_with_a_bad_tensor_hash_is_refused(hub_cache, bundle_bytes):
    data = bytearray(bundle_bytes)
    start, _ = tensor_span(data, "head.lora_B")
    data[start] ^= 0xFF  # corrupt before "upload": the hub checksum matches, the manifest's sha256 does not
    cache_file(hub_cache, "org/tiny", "tiny.hello", bytes(data))
    with pytest.raises(HubError, match="hash mismatch in the published file.*tensor 'head.lora_B'"):
        open_bundle("hf://datasets/org/tiny/tiny.hello")


def test_pull_copies_the_verified_bundle_and_its_card(hub_cache, bundle_bytes, tmp_path):
    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    out = tmp_path / "pulled"
    result = CliRunner().invoke(pull_command, ["hf://datasets/org/tiny/tiny.hello", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["tiny.hello"]  # the repo has no cached README.md
    assert (out / "tiny.hello").read_bytes() == bundle_bytes and not (out / "tiny.hello").is_symlink()
    assert "sha256 verified" in result.output and result.stderr == ""   # offline, no cached card is no card

    cache_file(hub_cache, "org/tiny", "README.md", b"---\nlicense: mit\n---\n" + card_of("tiny.hello"))
    paths = hub.pull("hf://datasets/org/tiny/tiny.hello", tmp_path / "again")
    assert [p.name for p in paths] == ["tiny.hello", "tiny.README.md"]
    assert paths[1].read_bytes().endswith(card_of("tiny.hello"))


def test_pull_writes_only_the_bytes_it_verified(hub_cache, bundle_bytes, tmp_path, monkeypatch):
    """The cache file was verified, then copied by its path again: one replaced in between was written
    unverified, and the command said "sha256 verified" (the 75th audit). The copy is what is verified."""
    from hello_format.hub import publish

    blob = Path(os.path.realpath(cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)))
    verified = publish.resolve

    def replaced_after_the_check(*args, **kwargs):
        local = verified(*args, **kwargs)
        blob.chmod(0o644)
        blob.write_bytes(bundle_bytes + b"junk")
        return local

    monkeypatch.setattr(publish, "resolve", replaced_after_the_check)
    out = tmp_path / "pulled"
    with pytest.raises(HubError, match=r"^hf://datasets/org/tiny/tiny\.hello: the copy of .* does not verify \(.*\): "
                                       r"the cached file changed while it was copied; pull again$"):
        hub.pull("hf://datasets/org/tiny/tiny.hello", out, with_card=False)
    assert not out.exists()   # nor the folder it made for the bundle


def test_pull_takes_the_card_of_the_bundles_own_commit(hub_cache, bundle_bytes, tmp_path, monkeypatch):
    """The card's size was asked, and the card fetched, at the branch again: moved since the bundle came,
    it gave another commit's card (fourteenth audit). The hub moves here between the two downloads."""
    from hello_format.hub import publish

    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes, commit=COMMIT)
    cache_file(hub_cache, "org/tiny", "README.md", card_of("tiny.hello", "# the bundle's card"), commit=COMMIT)
    cache_file(hub_cache, "org/tiny", "README.md", card_of("tiny.hello", "# another commit's card"),
               commit=OTHER_COMMIT, ref=None)
    resolve = publish.resolve

    def resolve_then_move_main(*args, **kwargs):
        local = resolve(*args, **kwargs)
        (Path(hub_cache) / "datasets--org--tiny" / "refs" / "main").write_text(OTHER_COMMIT)
        return local

    monkeypatch.setattr(publish, "resolve", resolve_then_move_main)
    paths = hub.pull("hf://datasets/org/tiny/tiny.hello", tmp_path / "pulled")
    assert paths[1].read_bytes() == card_of("tiny.hello", "# the bundle's card")


@pytest.mark.parametrize("readme, whose", [(card_of("cars.hello"), "it loads 'cars.hello'"),
                                           (b"# My datasets\n", "it loads no bundle")])
def test_pull_saves_no_card_that_is_not_the_bundles(hub_cache, bundle_bytes, tmp_path, readme, whose):
    """The repo's README.md was saved as NAME.README.md whoever's card it was: beside tiny.hello, the card
    of cars.hello pushed later to the same repo."""
    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    cache_file(hub_cache, "org/tiny", "README.md", readme)
    out = tmp_path / "out"
    result = CliRunner().invoke(pull_command, ["hf://datasets/org/tiny/tiny.hello", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert os.listdir(out) == ["tiny.hello"]
    assert result.stderr.splitlines() == [f"warning: hf://datasets/org/tiny@{COMMIT}/README.md is not the card "
                                          f"of 'tiny.hello' ({whose}): not pulled"]


def test_pull_into_a_folder_keeps_the_folders_own_readme(hub_cache, bundle_bytes, tmp_path):
    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    cache_file(hub_cache, "org/tiny", "README.md", card_of("tiny.hello", "# the stranger's card"))
    (tmp_path / "README.md").write_text("# my project\n")
    result = CliRunner().invoke(pull_command, ["hf://datasets/org/tiny/tiny.hello", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "README.md").read_text() == "# my project\n"
    assert (tmp_path / "tiny.README.md").read_bytes() == card_of("tiny.hello", "# the stranger's card")
    assert "with " + str(tmp_path / "tiny.README.md") in result.output


def test_a_card_left_from_an_earlier_pull_is_named(hub_cache, bundle_bytes, tmp_path):
    """Beside a newly pulled bundle, an old card silently passed for the new bundle's."""
    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)   # this repo's card is not cached
    (tmp_path / "tiny.README.md").write_text("# an earlier version's card\n")
    result = CliRunner().invoke(pull_command, ["hf://datasets/org/tiny/tiny.hello", "-o", str(tmp_path), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert f"{tmp_path / 'tiny.README.md'} is left from before: this pull brought no card" in result.output
    assert (tmp_path / "tiny.README.md").read_text() == "# an earlier version's card\n"


@pytest.mark.parametrize("in_the_way", ["a folder where the bundle goes", "a file where the folder goes",
                                        "a folder where the card goes"])
def test_pull_checks_where_it_writes_before_downloading(hub_cache, bundle_bytes, tmp_path, monkeypatch, in_the_way):
    """The bundle was downloaded and hashed (gigabytes) before pull found that it could not write it."""
    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    out = tmp_path / "out"
    if in_the_way == "a file where the folder goes":
        out.write_text("a file")
        out = out / "sub"
    else:
        (out / ("tiny.hello" if "bundle" in in_the_way else "tiny.README.md")).mkdir(parents=True)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *args, **kwargs: pytest.fail("downloaded"))
    with pytest.raises(HubError, match="cannot write there") as info:
        hub.pull("hf://datasets/org/tiny/tiny.hello", out)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("existing", ["tiny.hello", "tiny.README.md"])
def test_pull_replaces_an_existing_file_only_with_overwrite(hub_cache, bundle_bytes, tmp_path, monkeypatch, existing):
    """pull replaced the user's same-named file silently, where requantize asks for --overwrite. Refused
    before anything is downloaded, so even an identical file is (it is not read)."""
    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    cache_file(hub_cache, "org/tiny", "README.md", card_of("tiny.hello"))
    out = tmp_path / "out"
    out.mkdir()
    (out / existing).write_bytes(bundle_bytes if existing == "tiny.hello" else card_of("tiny.hello"))   # identical
    download = huggingface_hub.hf_hub_download
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *args, **kwargs: pytest.fail("downloaded"))
    args = ["hf://datasets/org/tiny/tiny.hello", "-o", str(out)]
    refused = CliRunner().invoke(cli, ["pull", *args])
    assert refused.exit_code == 2 and refused.stderr == f"error: {out / existing} exists: pass --overwrite to replace it\n"
    assert os.listdir(out) == [existing]
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    replaced = CliRunner().invoke(cli, ["pull", *args, "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert (out / "tiny.hello").read_bytes() == bundle_bytes and (out / "tiny.README.md").read_bytes() == card_of("tiny.hello")


def test_pull_into_a_place_it_cannot_write_is_one_line(hub_cache, bundle_bytes, tmp_path):
    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    (tmp_path / "file").write_text("not a folder")
    result = CliRunner().invoke(pull_command, ["hf://datasets/org/tiny/tiny.hello", "-o", str(tmp_path / "file" / "out")])
    assert isinstance(result.exception, HubError), result.exception
    assert "cannot write there" in str(result.exception) and "\n" not in str(result.exception)


# ----------------------------------------------------------------------------------------- push

@pytest.fixture
def no_token(tmp_path, monkeypatch):
    """No token anywhere: HF_TOKEN unset, HF_HOME an empty folder (its token path is read at import)."""
    home = tmp_path / "hf-home"
    home.mkdir()
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(home / "token"))
    assert huggingface_hub.get_token() is None


def test_push_without_token_fails_before_any_network(tmp_path, no_token):
    source = make_bundle(tmp_path / "tiny.hello")
    # HF_HUB_OFFLINE=1 turns any request into an offline error: the token error proves none was made
    with pytest.raises(HubError, match="needs a Hugging Face token") as info:
        hub.push(source, "org/tiny")
    assert "hf auth login" in str(info.value) and "HF_TOKEN" in str(info.value)
    result = CliRunner().invoke(push_command, [str(source), "org/tiny"])
    assert isinstance(result.exception, HubError) and "needs a Hugging Face token" in str(result.exception)


def test_push_without_token_names_a_bad_repo_id_first(tmp_path, no_token):
    """A typo in the repo id is said before the user is sent to log in (then told of the typo)."""
    source = make_bundle(tmp_path / "tiny.hello")
    result = CliRunner().invoke(push_command, [str(source), "tiny"])
    assert isinstance(result.exception, HubError) and "must be 'ORG/NAME'" in str(result.exception)


def test_push_without_token_names_a_bad_licence_first(tmp_path, no_token):
    """As the repo id: a licence typo was said only after the user had logged in (and the bundle been copied,
    verified and rendered); --dry-run copied and verified the bundle first."""
    source = make_bundle(tmp_path / "tiny.hello")
    result = CliRunner().invoke(push_command, [str(source), "org/tiny", "--license", "Apache 2.0"])
    assert isinstance(result.exception, HubError) and "is not a hub licence id" in str(result.exception)
    with pytest.raises(HubError, match="is not a hub licence id"):
        hub.write_upload_folder(tmp_path / "not-read.hello", tmp_path / "out", repo_id="org/tiny", license="MIT ")
    assert not (tmp_path / "out").exists()


def test_push_with_token_offline_reports_offline_mode(tmp_path):
    source = make_bundle(tmp_path / "tiny.hello")
    with pytest.raises(HubError, match="HF_HUB_OFFLINE=1 forbids network access"):
        hub.push(source, "org/tiny", token="hf_fake_token_for_offline_test")


def test_dry_run_writes_exactly_the_upload_folder(tmp_path, no_token):
    source = make_bundle(tmp_path / "tiny.hello")
    results = tmp_path / "results.json"
    results.write_text('[{"regime": "hello", "student": "convnet", "epochs": 300, "seed": 1, "top1": 55.5}]')
    out = tmp_path / "upload"
    result = CliRunner().invoke(push_command, [str(source), "org/tiny", "--dry-run", str(out), "--license", "mit",
                                               "--revision", "v1", "--eval", str(results)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "preview.png", "tiny.hello"]
    assert (out / "tiny.hello").read_bytes() == source.read_bytes()
    with Image.open(out / "preview.png") as preview:
        preview.verify()
    meta, body = split_card((out / "README.md").read_text())
    assert meta["license"] == "mit" and meta["size_categories"] == ["n<1K"]
    assert 'HelloDataset("hf://datasets/org/tiny@v1/tiny.hello")' in body
    assert "| hello | convnet | 300 | 1 | 55.5 |" in body
    assert "![" in body and "](preview.png)" in body
    assert "nothing uploaded" in result.output and "not included" in result.output
    assert "would publish hf://datasets/org/tiny@v1/tiny.hello" in result.output


def test_dry_run_says_which_hub_options_it_does_not_use(tmp_path, no_token):
    """--private, --token and --replace-card govern the upload a dry run does not make: dropped unsaid (the
    commands walkthrough)."""
    source = make_bundle(tmp_path / "tiny.hello")
    with pytest.warns(UserWarning) as caught:
        result = CliRunner().invoke(push_command, [str(source), "org/tiny", "--dry-run", str(tmp_path / "up"),
                                                   "--private", "--token", "hf_x", "--replace-card"])
    assert result.exit_code == 0, result.output
    assert [str(w.message) for w in caught] == ["push --dry-run does not use --private or --token or --replace-card"]


def test_dry_run_of_embedded_base_prints_a_notice(tmp_path):
    source = make_bundle(tmp_path / "e.hello", embed_base=True)
    out = tmp_path / "upload"
    result = CliRunner().invoke(push_command, [str(source), "org/e", "--dry-run", str(out), "--repo-type", "model"])
    assert result.exit_code == 0, result.output
    assert "notice: this bundle embeds its CLIP base weights" in result.output
    assert "embedded in this bundle" in (out / "README.md").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "e.hello", "preview.png"]  # nothing added


def test_dry_run_from_a_hub_uri_republishes_the_cached_file(hub_cache, bundle_bytes, tmp_path):
    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    folder = hub.write_upload_folder("hf://datasets/org/tiny/tiny.hello", tmp_path / "up", repo_id="me/copy")
    assert folder.bundle.read_bytes() == bundle_bytes and not folder.bundle.is_symlink()


@pytest.mark.parametrize("repo_id, words", [("tiny", "must be 'ORG/NAME'"), ("org/ti ny", "alphanumeric"),
                                            ("org/a--b", "Cannot have -- or ..")])
def test_bad_repo_ids(tmp_path, repo_id, words):
    source = make_bundle(tmp_path / "tiny.hello")
    with pytest.raises(HubError, match="repo id") as info:
        hub.write_upload_folder(source, tmp_path / "up", repo_id=repo_id)
    assert words in str(info.value)


@pytest.mark.parametrize("revision, words", [
    ("a b", "no space, control character"), ("v1\nx", "no space, control character"), ("a:b", "any of ~ ^ : ? * ["),
    ("a..b", "no '..'"), ("a/.b", "starts with '.'"), ("x.lock", "ends with '.lock'"), ("a//b", "an empty part"),
    ("-x", "a leading '-'"), ("HEAD", "'HEAD'"), ("x.", "a trailing '.'"), ("a@{1}", "'@{'"),
])
def test_a_revision_git_refuses_is_refused_before_anything_is_written(tmp_path, fake_hub, revision, words):
    """--dry-run wrote a card that named 'hf://datasets/org/tiny@a b/tiny.hello', which no push can make."""
    source = make_bundle(tmp_path / "tiny.hello")
    result = CliRunner().invoke(cli, ["push", str(source), "org/tiny", "--revision", revision, "--dry-run",
                                      str(tmp_path / "up")])
    assert result.exit_code == 2 and result.stderr.startswith("error: revision ") and words in result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "up").exists()
    with pytest.raises(HubError, match=f"^revision .*{re.escape(words)}"):
        hub.push(source, "org/tiny", revision=revision, token="hf_x")
    assert fake_hub.calls == []


@pytest.mark.parametrize("revision", ["v1.0", "feature/x-2", "refs/pr/3", "release_2026.12"])
def test_a_revision_git_accepts_is_named_in_the_card(tmp_path, revision):
    folder = hub.write_upload_folder(make_bundle(tmp_path / "tiny.hello"), tmp_path / "up", repo_id="org/tiny",
                                     revision=revision)
    assert hub.file_uri("org/tiny", "tiny.hello", repo_type="dataset", revision=revision) in folder.card.read_text()


def test_dry_run_refuses_a_non_empty_folder(tmp_path):
    source = make_bundle(tmp_path / "tiny.hello")
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(HubError, match="must be new or empty"):
        hub.write_upload_folder(source, out, repo_id="org/tiny")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_dry_run_into_the_current_folder_is_refused_in_one_line(tmp_path, monkeypatch):
    """--dry-run . in an empty folder said "cannot write there: Device or resource busy"."""
    source = make_bundle(tmp_path / "tiny.hello")
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    with pytest.raises(HubError, match=r"^\.: names the current folder, one above it or a root"):
        hub.write_upload_folder(source, ".", repo_id="org/tiny")
    assert list((tmp_path / "empty").iterdir()) == []


def test_dry_run_bad_eval_file_is_a_hub_error(tmp_path):
    source = make_bundle(tmp_path / "tiny.hello")
    results = tmp_path / "results.json"
    results.write_text('{"accuracy": 0.5}')
    result = CliRunner().invoke(push_command, [str(source), "org/tiny", "--dry-run", str(tmp_path / "up"),
                                               "--eval", str(results)])
    assert isinstance(result.exception, HubError) and "no 'top1'" in str(result.exception)
    assert not (tmp_path / "up").exists()


def test_a_repeated_eval_is_refused_not_reduced_to_its_last(tmp_path):
    """--eval A --eval B put only B on the card (click keeps an option's last value; the eval audit)."""
    source = make_bundle(tmp_path / "tiny.hello")
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text('{"top1": 50.0}')
    result = CliRunner().invoke(cli, ["push", str(source), "org/tiny", "--dry-run", str(tmp_path / "up"),
                                      "--eval", str(tmp_path / "a.json"), "--eval", str(tmp_path / "b.json")], prog_name="hello")
    assert result.exit_code == 2 and result.stderr == ("error: --eval takes one file: append the runs' lines to one "
                                                       "file (hello eval ... >> FILE) (see hello push --help)\n")
    assert not (tmp_path / "up").exists()


@pytest.mark.parametrize("other", [{"classes": 1000}, {"classes": 1000, "images": 10_000}])
def test_dry_run_refuses_the_eval_results_of_another_bundle(tmp_path, other):
    """Results of a 1,000-class, 10,000-image bundle went onto a 3-class bundle's card as its students'
    (a CLI walkthrough). hello eval records both counts; a row without them is taken as it is."""
    source = make_bundle(tmp_path / "tiny.hello")
    with Bundle.open(source) as bundle:
        own = {"top1": 50.0, "classes": bundle.num_classes, "images": bundle.num_images}
    results = tmp_path / "results.json"
    results.write_text(json.dumps([own, {"top1": 40.0}, {**own, **other}]))
    args = ["push", str(source), "org/tiny", "--dry-run", str(tmp_path / "up"), "--eval", str(results)]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1, refused.output
    assert refused.stderr.startswith("error: eval results entry 2 trained on 1000 classes") and not (tmp_path / "up").exists()
    results.write_text(json.dumps([own, {"top1": 40.0}]))
    assert CliRunner().invoke(cli, args).exit_code == 0


def test_dry_run_refuses_results_of_another_bundle_with_the_same_counts_and_publishes_no_local_path(tmp_path):
    """Another bundle of as many classes and images passed, and the card published the paths of the machine
    that ran hello eval (an eval walkthrough): hello eval records the manifest's sha256 of the bundle it trained on."""
    source, other = make_bundle(tmp_path / "tiny.hello"), make_bundle(tmp_path / "other.hello", seed=1)
    with Bundle.open(source) as bundle, Bundle.open(other) as theirs:
        assert (bundle.num_classes, bundle.num_images) == (theirs.num_classes, theirs.num_images)
        row = {"top1": 0.5, "classes": bundle.num_classes, "images": bundle.num_images, "bundle": "/home/me/tiny.hello",
               "val": "/home/me/val"}
        own, another = ({**row, "inputs": {"bundle_manifest_sha256": opened.manifest_sha256}} for opened in (bundle, theirs))
    results = tmp_path / "results.json"
    results.write_text(json.dumps([own, another]))
    args = ["push", str(source), "org/tiny", "--dry-run", str(tmp_path / "up"), "--eval", str(results)]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2 and refused.stderr.startswith("error: eval results entry 1 trained on the bundle whose "
                                                                "manifest sha256 is"), refused.output
    # the recorded sha256 cut as this bundle's is, without the opening quote it had alone
    assert f"sha256 is {another['inputs']['bundle_manifest_sha256'][:16]}..., this bundle's is " in refused.stderr
    results.write_text(json.dumps([own]))
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert "/home/me" not in (tmp_path / "up" / "README.md").read_text()


class FakeHub:
    """The HfApi calls a push makes, recorded (no network): the repository exists beforehand when
    ``private`` is not None, public or private as it says; its README.md, when ``card`` is given, is
    put into the hub cache (which a push reads it from, offline here)."""

    def __init__(self, private=None):
        self.private, self.calls, self.card_size, self.branches = private, [], None, set()

    def put_card(self, cache, data: bytes, repo_id="org/tiny"):
        cache_file(cache, repo_id, "README.md", data)
        self.private, self.card_size = bool(self.private), len(data)

    def get_paths_info(self, repo_id, paths, *, repo_type, revision=None):
        assert paths == ["README.md"]
        if revision not in (None, *self.branches):
            from huggingface_hub import errors as hf_errors

            raise hf_errors.RevisionNotFoundError("404", response=type("Response", (), {"headers": {}, "request": None})())
        return [] if self.card_size is None else [type("RepoFile", (), {"path": "README.md", "size": self.card_size})()]

    def api(self, token=None, library_name=None):
        return self

    def create_repo(self, repo_id, *, repo_type, private, exist_ok):
        self.calls.append(("create_repo", private))
        if self.private is None:
            self.private = bool(private)   # the hub's default for this owner: public here

    def repo_info(self, repo_id, *, repo_type):
        return type("Info", (), {"private": self.private})()

    def create_branch(self, repo_id, *, branch, repo_type, exist_ok):
        self.calls.append(("create_branch", branch))
        self.branches.add(branch)

    def upload_folder(self, *, folder_path, **kwargs):
        self.calls.append(("upload_folder", sorted(os.listdir(folder_path))))
        return type("Commit", (), {"commit_url": "https://huggingface.co/datasets/org/tiny/commit/1"})()


@pytest.fixture
def fake_hub(monkeypatch):
    hub_ = FakeHub()
    monkeypatch.setattr(huggingface_hub, "HfApi", hub_.api)
    return hub_


def test_push_leaves_a_new_repos_visibility_to_the_hub(tmp_path, fake_hub):
    """Without --private, create_repo was asked private=False: a public repo where the organisation's
    default is private."""
    result = CliRunner().invoke(push_command, [str(make_bundle(tmp_path / "tiny.hello")), "org/tiny", "--token", "hf_x"])
    assert result.exit_code == 0, result.output
    assert fake_hub.calls == [("create_repo", None), ("upload_folder", ["README.md", "preview.png", "tiny.hello"])]


@pytest.mark.parametrize("visibility", ["public", "private"])
def test_push_private_refuses_an_existing_public_repo_before_uploading(tmp_path, fake_hub, visibility):
    """--private said nothing when the repository already existed and was public: the bundle was published."""
    fake_hub.private = visibility == "private"   # the repository exists
    source = make_bundle(tmp_path / "tiny.hello")
    if fake_hub.private:
        hub.push(source, "org/tiny", private=True, token="hf_x")
        assert fake_hub.calls[-1][0] == "upload_folder"
        return
    with pytest.raises(HubError) as info:
        hub.push(source, "org/tiny", private=True, token="hf_x")
    assert str(info.value) == ("hf://datasets/org/tiny: the repository exists and is public, and --private does not "
                               "change that: make it private on its hub page, or push without --private")
    assert fake_hub.calls == [("create_repo", True)]


def test_push_keeps_another_bundles_card_unless_told(tmp_path, hub_cache, fake_hub):
    """Pushing cars.hello to a repo holding cats.hello and its card replaced the card (and preview), and
    pulling cats.hello then saved cars' card as cats.README.md."""
    (tmp_path / "src").mkdir()
    cats = make_bundle(tmp_path / "src" / "cats.hello")
    cars = make_bundle(tmp_path / "src" / "cars.hello", seed=1)
    fake_hub.put_card(hub_cache, hub.write_upload_folder(cats, tmp_path / "up", repo_id="org/zoo").card.read_bytes(),
                      "org/zoo")
    for revision in (None, "new-branch"):   # a branch the push makes starts from the default branch's card
        with pytest.raises(HubError) as info:
            hub.push(cars, "org/zoo", revision=revision, token="hf_x")
        assert str(info.value) == (
            f"{hub.file_uri('org/zoo', '', repo_type='dataset', revision=revision).rstrip('/')}: its README.md is not "
            "the card of 'cars.hello' (it loads 'cats.hello'): a push replaces README.md and preview.png; pass "
            "--replace-card to replace them, or push to another repository or --revision")
    assert [call[0] for call in fake_hub.calls] == ["create_repo", "create_repo"]   # nothing uploaded
    hub.push(cats, "org/zoo", token="hf_x")   # its own card: replaced by the new one
    assert fake_hub.calls[-1][0] == "upload_folder"
    result = CliRunner().invoke(push_command, [str(cars), "org/zoo", "--token", "hf_x", "--replace-card"])
    assert result.exit_code == 0, result.output
    assert fake_hub.calls[-1] == ("upload_folder", ["README.md", "cars.hello", "preview.png"])


def test_push_keeps_a_card_that_loads_other_bundles_too_unless_told(tmp_path, hub_cache, fake_hub):
    """A README.md loading cats.hello and cars.hello is not cars.hello's card alone: pushing cars.hello would
    drop what it says of cats.hello."""
    fake_hub.put_card(hub_cache, card_of("cats.hello", "# the zoo") + card_of("cars.hello", "## cars"), "org/tiny")
    with pytest.raises(HubError) as info:
        hub.push(make_bundle(tmp_path / "cars.hello"), "org/tiny", token="hf_x")
    assert "its README.md is not the card of 'cars.hello' (it loads 'cars.hello', 'cats.hello')" in str(info.value)
    assert fake_hub.calls == [("create_repo", None)]


@pytest.mark.parametrize("readme, whose", [
    (b"# My datasets\n\nHelloDataset(path) loads each.\n", "it loads no bundle"),
    (b"A" * (limits.MAX_CARD_BYTES + 1), f"it holds {limits.MAX_CARD_BYTES + 1:,} bytes, more than a card"),
])
def test_push_keeps_a_readme_hello_did_not_write_unless_told(tmp_path, hub_cache, fake_hub, readme, whose):
    fake_hub.put_card(hub_cache, readme)
    result = CliRunner().invoke(push_command, [str(make_bundle(tmp_path / "tiny.hello")), "org/tiny", "--token", "hf_x"])
    assert isinstance(result.exception, HubError) and str(result.exception) == (
        f"hf://datasets/org/tiny: its README.md is not the card of 'tiny.hello' ({whose}): a push replaces README.md "
        "and preview.png; pass --replace-card to replace them, or push to another repository or --revision")
    assert fake_hub.calls == [("create_repo", None)]


def test_hello_push_private_creates_a_private_repository(tmp_path, fake_hub):
    """--private on the command line reaches create_repo (and the existing-public refusal)."""
    result = CliRunner().invoke(push_command, [str(make_bundle(tmp_path / "tiny.hello")), "org/tiny", "--token", "hf_x",
                                               "--private"])
    assert result.exit_code == 0, result.output
    assert fake_hub.calls[0] == ("create_repo", True) and fake_hub.private is True


def test_push_refused_token_asks_for_write_access(tmp_path, fake_hub, monkeypatch):
    from huggingface_hub import errors as hf_errors

    def refused(*args, **kwargs):
        response = type("Response", (), {"headers": {}, "request": None, "status_code": 403})()
        raise hf_errors.HfHubHTTPError("403 Forbidden", response=response)

    monkeypatch.setattr(fake_hub, "create_repo", refused)
    with pytest.raises(HubError) as info:
        hub.push(make_bundle(tmp_path / "tiny.hello"), "org/tiny", token="hf_read_only")
    assert str(info.value) == (f"hf://datasets/org/tiny: the hub refused the token (HTTP 403): it needs write access; "
                               f"{resolver.LOGIN_HINT}")


def test_hello_pull_no_card_leaves_the_card(hub_cache, bundle_bytes, tmp_path):
    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    cache_file(hub_cache, "org/tiny", "README.md", card_of("tiny.hello"))
    out = tmp_path / "out"
    result = CliRunner().invoke(pull_command, ["hf://datasets/org/tiny/tiny.hello", "-o", str(out), "--no-card"])
    assert result.exit_code == 0, result.output
    assert os.listdir(out) == ["tiny.hello"] and "with " not in result.output


def test_push_to_a_pull_request_ref_makes_no_branch(tmp_path, fake_hub):
    """refs/pr/N exists on the hub only as a pull request: create_branch is asked only for plain branch names."""
    hub.push(make_bundle(tmp_path / "tiny.hello"), "org/tiny", revision="refs/pr/3", token="hf_x")
    assert [call[0] for call in fake_hub.calls] == ["create_repo", "upload_folder"]


def test_push_of_a_hub_bundle_without_token_downloads_nothing(tmp_path, no_token, monkeypatch):
    """The token is checked before the bundle is fetched: a push without one never reaches the hub."""
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *args, **kwargs: pytest.fail("downloaded"))
    with pytest.raises(HubError, match="pushing needs a Hugging Face token"):
        hub.push("hf://datasets/org/tiny/tiny.hello", "org/tiny")


# ------------------------------------------------------------------------------ the `hello` command

def test_hello_push_without_token_in_a_fresh_process(tmp_path):
    """The real entry point with HF_TOKEN unset and HF_HOME empty: `error: ...` on stderr, exit 2."""
    source = make_bundle(tmp_path / "tiny.hello")
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_OIDC_RESOURCE")}
    env.update(HF_HOME=str(tmp_path / "empty-hf-home"), HF_HUB_OFFLINE="1")
    run = subprocess.run([sys.executable, "-c", "from hello_format.cli import main; main()", "push", str(source),
                          "org/tiny"], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("error: pushing needs a Hugging Face token") and run.stderr.count("\n") == 1
    assert "hf auth login" in run.stderr and "Traceback" not in run.stderr


def test_hello_pull_through_the_cli_group(hub_cache, bundle_bytes, tmp_path):
    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    runner = CliRunner()
    ok = runner.invoke(cli, ["pull", "hf://datasets/org/tiny/tiny.hello", "-o", str(tmp_path / "out")])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "out" / "tiny.hello").read_bytes() == bundle_bytes
    missing = runner.invoke(cli, ["pull", "hf://datasets/org/tiny/nope.hello", "-o", str(tmp_path / "out2")])
    assert missing.exit_code == 2
    assert "error: hf://datasets/org/tiny/nope.hello: not in the local hub cache" in missing.output
    assert "unset HF_HUB_OFFLINE for one run that downloads it" in missing.output   # not "hello pull" to hello pull
    info = runner.invoke(cli, ["info", "hf://datasets/org/tiny/tiny.hello"])
    assert info.exit_code == 0, info.output


def test_pull_over_a_mapped_bundle_replaces_it_without_truncating_the_reader(hub_cache, bundle_bytes, tmp_path):
    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    out = tmp_path / "pulled"
    target = hub.pull("hf://datasets/org/tiny/tiny.hello", out, with_card=False)[0]
    reader = Bundle.open(target)
    images, inode = reader.images(), target.stat().st_ino
    (tmp_path / "src2").mkdir()
    newer = make_bundle(tmp_path / "src2" / "tiny.hello", seed=1).read_bytes()
    cache_file(hub_cache, "org/tiny", "tiny.hello", newer, commit="b" * 40)
    hub.pull("hf://datasets/org/tiny@" + "b" * 40 + "/tiny.hello", out, with_card=False, overwrite=True)
    assert target.read_bytes() == newer and target.stat().st_ino != inode    # renamed over, not rewritten
    assert sorted(p.name for p in out.iterdir()) == ["tiny.hello"]         # no temp file left
    reader.verify()                                                         # the old mapping is whole
    assert reader.images().equal(images)


def test_dry_run_that_fails_while_writing_leaves_no_half_folder(tmp_path, monkeypatch):
    """The folder push would upload appears whole or not at all (here the preview's write fails)."""
    source = make_bundle(tmp_path / "tiny.hello")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    with pytest.raises(HubError, match="upload: cannot write there: No space left on device"):
        hub.write_upload_folder(source, tmp_path / "upload", repo_id="org/tiny")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.hello"]   # no folder, no temp folder
    # nor the parent folders it made for it (they stayed: the commands walkthrough)
    with pytest.raises(HubError, match="upload: cannot write there: No space left on device"):
        hub.write_upload_folder(source, tmp_path / "new" / "er" / "upload", repo_id="org/tiny")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.hello"]
    # ... nor those it made before a folder's name was refused (the review)
    with pytest.raises(HubError, match="cannot write there: File name too long"):
        hub.write_upload_folder(source, tmp_path / "new" / "er" / ("x" * 300) / "upload", repo_id="org/tiny")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.hello"]


# ------------------------------------------------------------- found by the sixth hostile-input audit

def test_pull_skips_a_card_larger_than_a_card_with_one_warning(hub_cache, bundle_bytes, tmp_path):
    """The remote README.md was copied whatever its size: a 200 MiB 'card' beside a 10 kB bundle."""
    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    cache_file(hub_cache, "org/tiny", "README.md", b"A" * (limits.MAX_CARD_BYTES + 1))
    with pytest.warns(UserWarning, match=f"{limits.MAX_CARD_BYTES + 1:,} bytes .* not pulled"):
        paths = hub.pull("hf://datasets/org/tiny/tiny.hello", tmp_path / "out")
    assert [p.name for p in paths] == ["tiny.hello"] and sorted(os.listdir(tmp_path / "out")) == ["tiny.hello"]


@pytest.mark.parametrize("elsewhere", ["/proc/self/environ", "/dev/zero"])
def test_a_cached_card_that_leads_out_of_its_repository_is_not_read(hub_cache, bundle_bytes, tmp_path, elsewhere, monkeypatch):
    """A cache copied from elsewhere, whose README.md snapshot linked to /proc/self/environ, put the process's
    environment (HF_TOKEN with it) beside the bundle; one linked to /dev/zero (stat: 0 bytes) was copied
    until the disk filled (eighteenth audit)."""
    if not os.path.exists(elsewhere):
        pytest.skip(f"no {elsewhere} here")
    monkeypatch.setenv("HELLO_TEST_SECRET", "s3cret")
    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    card = cache_file(hub_cache, "org/tiny", "README.md", b"# a card")
    card.unlink()
    card.symlink_to(elsewhere)
    with pytest.warns(UserWarning, match=r"README.md: the cached file .* leads to .*, not to a file of its "
                                         r"repository's cache; .* \(the card is not pulled\)"):   # said, not skipped silently
        paths = hub.pull("hf://datasets/org/tiny/tiny.hello", tmp_path / "out")
    assert [p.name for p in paths] == ["tiny.hello"] and sorted(os.listdir(tmp_path / "out")) == ["tiny.hello"]


def test_a_cached_card_that_leads_to_a_folder_of_its_repository_is_not_read(hub_cache, bundle_bytes, tmp_path):
    """Inside its repository's cache, a README.md link to something that is no file (here the blobs folder)
    is refused like one leading out of it: a warning, and the bundle pulls alone."""
    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    card = cache_file(hub_cache, "org/tiny", "README.md", b"# a card")
    card.unlink()
    card.symlink_to(os.path.relpath(Path(hub_cache) / "datasets--org--tiny" / "blobs", card.parent))
    with pytest.warns(UserWarning, match=r"README.md: the cached file .* leads to .*, not to a file of its "
                                         r"repository's cache"):
        paths = hub.pull("hf://datasets/org/tiny/tiny.hello", tmp_path / "out")
    assert [p.name for p in paths] == ["tiny.hello"] and sorted(os.listdir(tmp_path / "out")) == ["tiny.hello"]


@pytest.mark.parametrize("answer, said", [
    (503, "download failed: HfHubHTTPError: 503 Service Unavailable"),
    (401, f"the hub refused the token (HTTP 401): it needs read access; {resolver.LOGIN_HINT}"),
    (404, None),   # the repo has no card: nothing to say
])
def test_pull_online_says_why_a_card_that_may_exist_is_not_pulled(hub_cache, bundle_bytes, tmp_path, monkeypatch,
                                                                  answer, said):
    """Every failure to fetch README.md dropped the card without a word: a 503, a timeout or a refused token
    looked like a repo without a card. Online here: the bundle downloads, the card's HEAD gets ``answer``."""
    from huggingface_hub import errors as hf_errors

    pointer = cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *args, **kwargs: str(pointer))

    def metadata(url, **kwargs):
        response = type("Response", (), {"headers": {}, "request": None, "status_code": answer})()
        error = hf_errors.RemoteEntryNotFoundError if answer == 404 else hf_errors.HfHubHTTPError
        raise error(f"{answer} Service Unavailable" if answer == 503 else f"{answer}", response=response)

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", metadata)
    result = CliRunner().invoke(pull_command, ["hf://datasets/org/tiny/tiny.hello", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert os.listdir(tmp_path / "out") == ["tiny.hello"]
    expected = [] if said is None else [f"warning: hf://datasets/org/tiny@{COMMIT}/README.md: {said} "
                                        "(the card is not pulled)"]
    assert result.stderr.splitlines() == expected


@pytest.mark.parametrize("size", [None, limits.MAX_CARD_BYTES + 1])
def test_pull_online_downloads_no_card_the_hub_gives_no_fitting_size_for(hub_cache, bundle_bytes, tmp_path, monkeypatch,
                                                                         size):
    """Online, the card's size is asked before it is downloaded: one of unknown size, or over
    MAX_CARD_BYTES, is neither downloaded nor pulled (one warning line), whatever the file turns out to hold."""
    pointer = cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    readme = cache_file(hub_cache, "org/tiny", "README.md", card_of("tiny.hello"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    asked = []

    def download(repo_id, filename, **kwargs):
        asked.append(filename)
        return str(pointer if filename == "tiny.hello" else readme)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda url, **kwargs: type("Meta", (), {"size": size})())
    said = "of unknown size" if size is None else f"{size:,} bytes"
    with pytest.warns(UserWarning, match=f"README.md is {said} .* not pulled"):
        paths = hub.pull("hf://datasets/org/tiny/tiny.hello", tmp_path / "out")
    assert [p.name for p in paths] == ["tiny.hello"] and os.listdir(tmp_path / "out") == ["tiny.hello"]
    assert asked == ["tiny.hello"]


def test_a_cached_bundle_that_leads_out_of_its_repository_is_refused(hub_cache, bundle_bytes, tmp_path):
    mine = tmp_path / "mine.hello"   # a file of the user's, named by a link in a copied cache
    mine.write_bytes(bundle_bytes)
    pointer = cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    pointer.unlink()
    pointer.symlink_to(mine)
    with pytest.raises(HubError, match=r"the cached file .* leads to .*mine\.hello.*, not to a file of its repository's cache"):
        hub.pull("hf://datasets/org/tiny/tiny.hello", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_hello_pull_says_a_skipped_card_in_one_line(hub_cache, bundle_bytes, tmp_path):
    """The warning came with Python's source path and code line: two lines of internals (tenth audit)."""
    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    cache_file(hub_cache, "org/tiny", "README.md", b"A" * (limits.MAX_CARD_BYTES + 1))
    result = CliRunner().invoke(pull_command, ["hf://datasets/org/tiny/tiny.hello", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [f"warning: hf://datasets/org/tiny@{COMMIT}/README.md is "   # the bundle's commit
                                          f"{limits.MAX_CARD_BYTES + 1:,} bytes (a card is at most "
                                          f"{limits.MAX_CARD_BYTES:,}): not pulled"]


def test_pull_writes_the_bundle_and_its_card_or_neither(hub_cache, bundle_bytes, tmp_path):
    """The bundle replaced the user's same-named file, then the card's write failed and the command
    reported an error naming the folder."""
    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    cache_file(hub_cache, "org/tiny", "README.md", b"# card\n")
    out = tmp_path / "out"
    (out / "tiny.README.md").mkdir(parents=True)
    (out / "tiny.hello").write_bytes(b"my own file")
    with pytest.raises(HubError, match="tiny.README.md: cannot write there"):
        hub.pull("hf://datasets/org/tiny/tiny.hello", out, overwrite=True)
    assert (out / "tiny.hello").read_bytes() == b"my own file"
    assert sorted(os.listdir(out)) == ["tiny.README.md", "tiny.hello"]   # no temp file left


def test_pull_replaces_no_card_when_the_bundle_cannot_take_its_place(hub_cache, bundle_bytes, tmp_path):
    """The card was renamed into place first; a folder where the bundle goes then failed the bundle's
    rename and left the new card beside the user's old files (found by the ninth hostile-input audit)."""
    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    cache_file(hub_cache, "org/tiny", "README.md", b"# new card\n")
    out = tmp_path / "out"
    (out / "tiny.hello").mkdir(parents=True)
    (out / "tiny.README.md").write_text("# my card\n")
    with pytest.raises(HubError, match="tiny.hello: cannot write there: a folder is in the way"):
        hub.pull("hf://datasets/org/tiny/tiny.hello", out)
    assert (out / "tiny.README.md").read_text() == "# my card\n"
    assert sorted(os.listdir(out)) == ["tiny.README.md", "tiny.hello"]   # no temp file left


@pytest.mark.parametrize("failure", [KeyboardInterrupt(), OSError(5, "Input/output error")])
def test_pull_renames_neither_file_until_both_are_flushed(hub_cache, tmp_path, monkeypatch, failure):
    """The card was renamed into place before the bundle's temp file was flushed: Ctrl-C or an I/O error
    during that fsync (seconds for a large bundle) left the new card beside the old bundle."""
    from hello_format import files

    (tmp_path / "src").mkdir()
    cache_file(hub_cache, "org/tiny", "tiny.hello", make_bundle(tmp_path / "src" / "tiny.hello", seed=1).read_bytes())
    cache_file(hub_cache, "org/tiny", "README.md", card_of("tiny.hello", "# the new bundle's card"))
    out = tmp_path / "out"
    out.mkdir()
    old = make_bundle(out / "tiny.hello", seed=2).read_bytes()
    (out / "tiny.README.md").write_text("# the old bundle's card\n")
    fsync = os.fsync

    def failing_fsync(fd):
        if os.fstat(fd).st_size > 1000:   # the bundle's temp file, not the card's
            raise failure
        fsync(fd)

    monkeypatch.setattr(files.os, "fsync", failing_fsync)
    with pytest.raises(HubError if isinstance(failure, OSError) else KeyboardInterrupt):
        hub.pull("hf://datasets/org/tiny/tiny.hello", out, overwrite=True)
    assert (out / "tiny.hello").read_bytes() == old
    assert (out / "tiny.README.md").read_text() == "# the old bundle's card\n"
    assert sorted(os.listdir(out)) == ["tiny.README.md", "tiny.hello"]   # no temp file left


def test_pull_renames_the_bundle_then_its_card_with_signals_held(hub_cache, bundle_bytes, tmp_path, monkeypatch):
    from hello_format import files

    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    cache_file(hub_cache, "org/tiny", "README.md", card_of("tiny.hello"))
    renames, replace = [], os.replace
    monkeypatch.setattr(files.os, "replace", lambda temp, path: renames.append((Path(path).name, files._hold_depth))
                        or replace(temp, path))
    hub.pull("hf://datasets/org/tiny/tiny.hello", tmp_path / "out")
    assert renames == [("tiny.hello", 1), ("tiny.README.md", 1)]


def test_pull_refuses_another_users_file_in_a_sticky_folder_before_writing(hub_cache, bundle_bytes, tmp_path, monkeypatch):
    """In /tmp (sticky) a rename over another user's file fails: the check comes before either rename.
    Here this process plays a user who owns neither the folder nor the file."""
    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    cache_file(hub_cache, "org/tiny", "README.md", b"# new card\n")
    out = tmp_path / "shared"
    out.mkdir(mode=0o1777)
    out.chmod(0o1777)
    (out / "tiny.hello").write_bytes(b"theirs")
    monkeypatch.setattr(os, "geteuid", lambda: out.stat().st_uid + 4242)
    with pytest.raises(HubError, match="tiny.hello: cannot write there: another user's file in a sticky folder"):
        hub.pull("hf://datasets/org/tiny/tiny.hello", out, overwrite=True)
    assert sorted(os.listdir(out)) == ["tiny.hello"] and (out / "tiny.hello").read_bytes() == b"theirs"


@pytest.mark.parametrize("name", ["README.md", "readme.MD", "preview.png", "other.README.md"])
def test_a_bundle_named_like_a_card_or_preview_is_neither_pushed_nor_pulled(hub_cache, bundle_bytes, tmp_path, name):
    """Pushing README.md uploaded the card in the bundle's place; pulling .../README.md replaced the
    folder's own README.md."""
    source = tmp_path / "src" / name
    source.write_bytes(bundle_bytes)
    with pytest.raises(HubError, match="may not be named"):
        hub.write_upload_folder(source, tmp_path / "up", repo_id="me/copy")
    assert not (tmp_path / "up").exists()
    cache_file(hub_cache, "org/tiny", f"docs/{name}", bundle_bytes)
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "README.md").write_text("# my project\n")
    with pytest.raises(HubError, match="may not be named"):
        hub.pull(f"hf://datasets/org/tiny/docs/{name}", tmp_path / "proj")
    assert os.listdir(tmp_path / "proj") == ["README.md"]
    assert (tmp_path / "proj" / "README.md").read_text() == "# my project\n"


def test_a_hub_bundle_is_hashed_once_on_its_way_to_a_projector(hub_cache, tmp_path, monkeypatch):
    """The download was checked in a bundle thrown away, then Projector.from_bundle hashed the projector's
    tensors again in the one returned: twice the bytes for an embedded base (a review)."""
    import hello_format.bundle as bundle_module
    from hello_format import Projector

    from support import write_labelled_bundle

    bundle_bytes = write_labelled_bundle(tmp_path / "tiny.hello", "vit").read_bytes()
    cache_file(hub_cache, "org/tiny", "tiny.hello", bundle_bytes)
    hashed = []
    real = bundle_module.buffer_sha256
    monkeypatch.setattr(bundle_module, "buffer_sha256", lambda data: hashed.append(len(data)) or real(data))
    Projector.from_bundle("hf://datasets/org/tiny/tiny.hello")
    assert 0 < sum(hashed) <= len(bundle_bytes)
