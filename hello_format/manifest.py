"""The manifest: canonical JSON, its sha256, version rules and JSON Schema validation (spec sections 2, 5, 6)."""

import functools
import hashlib
import json
from importlib import resources

import jsonschema

from hello_format.errors import ManifestError, UnsupportedVersionError

FORMAT_VERSION = "1.0"
SUPPORTED_MAJOR = 1


def canonical_json(manifest: dict) -> str:
    """The manifest as stored: sorted keys, no whitespace, UTF-8 (not \\u escapes), no NaN."""
    try:
        return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ManifestError(f"manifest is not JSON-serialisable: {exc}") from None


def manifest_sha256(text: str) -> str:
    """Hex sha256 of the manifest string's UTF-8 bytes (``hello.manifest.sha256``)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@functools.cache
def load_schema() -> dict:
    """The manifest JSON Schema (draft 2020-12) shipped with the package."""
    text = resources.files("hello_format").joinpath("schema/manifest.schema.json").read_text("utf-8")
    return json.loads(text)


def _is_strict_integer(checker, instance) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    """Draft 2020-12, except that an "integer" must be written as one (8, not 8.0)."""
    schema = load_schema()
    base = jsonschema.Draft202012Validator
    base.check_schema(schema)
    checker = base.TYPE_CHECKER.redefine("integer", _is_strict_integer)
    return jsonschema.validators.extend(base, type_checker=checker)(schema)


def check_version(manifest: dict, where: str = "manifest") -> tuple[int, int]:
    """Return (major, minor); refuse a malformed version or an unknown major."""
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if not isinstance(version, str):
        raise ManifestError(f"{where}: missing or non-string field 'format_version'")
    parts = version.split(".")
    if len(parts) != 2 or not all(p.isdigit() and p.isascii() for p in parts):
        raise ManifestError(f"{where}: format_version {version!r} is not 'MAJOR.MINOR'")
    major, minor = int(parts[0]), int(parts[1])
    if major != SUPPORTED_MAJOR:
        raise UnsupportedVersionError(
            f"{where}: format_version {version} has major {major}; this reader supports "
            f"{SUPPORTED_MAJOR}.x: upgrade hello-distill")
    return major, minor


def validate_manifest(manifest: dict, where: str = "manifest") -> None:
    """Check the version rules, then the JSON Schema; raise ManifestError naming the field."""
    if not isinstance(manifest, dict):
        raise ManifestError(f"{where}: the manifest must be a JSON object, got {type(manifest).__name__}")
    check_version(manifest, where)
    error = jsonschema.exceptions.best_match(_validator().iter_errors(manifest))
    if error is not None:
        field = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        message = " ".join(error.message.split())
        message = message if len(message) <= 200 else message[:200] + "..."
        raise ManifestError(f"{where}: field '{field}': {message}")
