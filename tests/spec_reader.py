"""A second `.hello` reader written from spec/format.md alone (sections 1-9 and 14's refusals), without
hello_format: it tells whether the spec is precise enough for an independent reader. ``check(path)``
returns ``"valid"`` or the name of the error class the spec assigns. No labels are computed and no base
is built (BaseModelError checks are out of scope)."""

import hashlib
import io
import json
import math
import pathlib
import re
import struct
import unicodedata

import jsonschema
import numpy as np
from PIL import Image

SCHEMA = json.loads((pathlib.Path(__file__).resolve().parent.parent / "spec" / "manifest.schema.json").read_text())
DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "U16": 2, "I32": 4, "U32": 4, "I64": 8, "U64": 8,
          "F16": 2, "BF16": 2, "F32": 4, "F64": 8}
FLOATS = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "BF16": None}
LORA_DTYPES = {"float16": "F16", "bfloat16": "BF16", "float32": "F32", "int8": "I8", "int4": "U8"}
FEATURES = {"prior_mix"}


class Refused(Exception):
    def __init__(self, cls, msg):
        super().__init__(f"{cls}: {msg}")
        self.cls = cls


def fail(cls, msg):
    raise Refused(cls, msg)


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def has_surrogate(s):
    return any(0xD800 <= ord(c) <= 0xDFFF for c in s)


# --- 1.2 step 3: strict JSON -------------------------------------------------------------------------------

def strict_json(text, cls):
    if text.count("[") + text.count("{") > 1_000_000 or text.count(",") > 4_000_000 or text.count(":") > 1_000_000:
        fail(cls, "too many structural characters")

    def pairs(items):
        out = {}
        for k, v in items:
            if k in out:
                fail(cls, f"duplicate key {k!r}")
            out[k] = v
        return out

    def const(s):
        fail(cls, f"{s} is not JSON")

    def flt(s):
        v = float(s)
        if math.isinf(v):
            fail(cls, "number overflows a 64-bit float")
        return v

    def integer(s):
        if len(s.lstrip("-")) > 20:
            fail(cls, "integer of more than 20 digits")
        if s == "-0":
            fail(cls, "integer -0")
        return int(s)

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=const, parse_float=flt, parse_int=integer)
    except (ValueError, RecursionError) as e:
        fail(cls, f"not valid JSON: {e}")


# --- 1, 1.2: container -------------------------------------------------------------------------------------

def read_container(data):
    size = len(data)
    if size < 8:
        fail("HeaderError", "shorter than 8 bytes")
    (n,) = struct.unpack("<Q", data[:8])
    if n > size - 8 or n > 100_000_000:
        fail("HeaderError", "header length exceeds the file")
    try:
        text = data[8:8 + n].decode("utf-8")
    except UnicodeDecodeError:
        fail("HeaderError", "header is not UTF-8")
    header = strict_json(text, "HeaderError")
    if not isinstance(header, dict):
        fail("HeaderError", "header is not a JSON object")
    meta = header.pop("__metadata__", {})   # present (even null): an object of strings
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        fail("HeaderError", "__metadata__ is not an object of strings")
    if any(has_surrogate(k) or has_surrogate(v) for k, v in meta.items()):
        fail("HeaderError", "lone surrogate in __metadata__")
    if len(header) > 100_000:
        fail("HeaderError", "too many tensors")
    for name in header:
        if len(name) > 1024 or has_surrogate(name):
            fail("HeaderError", f"bad tensor name {name[:40]!r}")
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            fail("HeaderError", f"tensor {name!r}: entry keys")
        dtype, shape, offs = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            fail("HeaderError", f"tensor {name!r}: dtype")
        if not isinstance(shape, list) or len(shape) > 8 or not all(is_int(d) and d >= 0 for d in shape):
            fail("HeaderError", f"tensor {name!r}: shape")
        if math.prod(max(d, 1) for d in shape) > 2 ** 59:
            fail("HeaderError", f"tensor {name!r}: the product of its dimensions")
        if (not isinstance(offs, list) or len(offs) != 2 or not all(is_int(o) for o in offs)
                or not 0 <= offs[0] <= offs[1]):
            fail("HeaderError", f"tensor {name!r}: data_offsets")
    for name, entry in header.items():
        b, e = entry["data_offsets"]
        need = math.prod(entry["shape"]) * DTYPES[entry["dtype"]]
        if e - b != need:
            fail("HeaderError", f"tensor {name!r} needs {need} bytes, has {e - b}")
    data_len = size - 8 - n
    end = 0
    for name, entry in sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"])):
        b, e = entry["data_offsets"]
        if b != end:
            fail("HeaderError", f"tensor {name!r} overlaps or leaves a gap")
        end = e
    if end != data_len:
        fail("HeaderError", "tensors do not end at the end of the file (truncated or trailing bytes)")
    return meta, header, 8 + n


# --- 14.2: target patterns ---------------------------------------------------------------------------------

PUNCT = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
SPECIAL = set("\\.^$|?*+()[]{}")
DIGIT = frozenset("0123456789")
WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


class Pattern:
    """Parse the 14.2 subset into a Thompson NFA; match whole names in linear time."""

    def __init__(self, text):
        if len(text) > 512:
            raise ValueError("longer than 512 characters")
        self.text, self.trans, self.eps = text, [], []
        body = text[1:] if text.startswith("^") else text
        if body.endswith("$") and not self._escaped(body, len(body) - 1):
            body = body[:-1]
        self.s, self.i = body, 0
        start, end = self._alt(0)
        if self.i != len(self.s):
            raise ValueError(f"unexpected {self.s[self.i]!r}")
        self.start, self.end = start, end

    @staticmethod
    def _escaped(s, j):
        k = j - 1
        while k >= 0 and s[k] == "\\":
            k -= 1
        return (j - 1 - k) % 2 == 1

    def _state(self):
        self.trans.append([])
        self.eps.append([])
        return len(self.trans) - 1

    def _alt(self, depth):
        branches = [self._concat(depth)]
        while self.i < len(self.s) and self.s[self.i] == "|":
            self.i += 1
            branches.append(self._concat(depth))
        if len(branches) == 1:
            return branches[0]
        s, e = self._state(), self._state()
        for bs, be in branches:
            self.eps[s].append(bs)
            self.eps[be].append(e)
        return s, e

    def _concat(self, depth):
        s = e = self._state()
        while self.i < len(self.s) and self.s[self.i] not in "|)":
            fs, fe = self._repeat(depth)
            self.eps[e].append(fs)
            e = fe
        return s, e

    def _repeat(self, depth):
        fs, fe = self._atom(depth)
        if self.i < len(self.s) and self.s[self.i] in "?*+":
            q = self.s[self.i]
            self.i += 1
            if self.i < len(self.s) and self.s[self.i] in "?*+{":
                raise ValueError("lazy, possessive or repeated quantifier")
            s, e = self._state(), self._state()
            self.eps[s].append(fs)
            self.eps[fe].append(e)
            if q in "?*":
                self.eps[s].append(e)
            if q in "*+":
                self.eps[fe].append(fs)
            return s, e
        return fs, fe

    def _char(self, test):
        s, e = self._state(), self._state()
        self.trans[s].append((test, e))
        return s, e

    def _escape(self):
        if self.i + 1 >= len(self.s):
            raise ValueError("trailing backslash")
        c = self.s[self.i + 1]
        self.i += 2
        if c == "d":
            return DIGIT
        if c == "w":
            return WORD
        if c in PUNCT:
            return frozenset(c)
        raise ValueError(f"escape \\{c}")

    def _atom(self, depth):
        c = self.s[self.i]
        if c == "(":
            if depth >= 16:
                raise ValueError("groups nested deeper than 16")
            self.i += 1
            if self.s.startswith("?:", self.i):
                self.i += 2
            elif self.i < len(self.s) and self.s[self.i] == "?":
                raise ValueError("group extension")
            frag = self._alt(depth + 1)
            if self.i >= len(self.s) or self.s[self.i] != ")":
                raise ValueError("unbalanced (")
            self.i += 1
            return frag
        if c == ".":
            self.i += 1
            return self._char(lambda ch: ch != "\n")
        if c == "\\":
            chars = self._escape()
            return self._char(lambda ch: ch in chars)
        if c == "[":
            return self._class()
        if c in SPECIAL:
            raise ValueError(f"unsupported {c!r}")
        self.i += 1
        return self._char(lambda ch: ch == c)

    def _class(self):
        self.i += 1
        negate = self.i < len(self.s) and self.s[self.i] == "^"
        self.i += negate
        sets, ranges, first = [], [], True
        while True:
            if self.i >= len(self.s):
                raise ValueError("unterminated [")
            c = self.s[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if c == "\\":
                sets.append(self._escape())
                if self.s.startswith("-", self.i) and not self.s.startswith("-]", self.i):
                    raise ValueError("range from an escape")
                continue
            self.i += 1
            if self.s.startswith("-", self.i) and self.i + 1 < len(self.s) and self.s[self.i + 1] != "]":
                hi = self.s[self.i + 1]
                if hi == "\\" or hi < c:
                    raise ValueError("bad range")
                ranges.append((c, hi))
                self.i += 2
            else:
                sets.append(frozenset(c))

        def test(ch):
            inside = any(ch in s for s in sets) or any(lo <= ch <= hi for lo, hi in ranges)
            return inside != negate
        return self._char(test)

    def _closure(self, states):
        stack, seen = list(states), set(states)
        while stack:
            for t in self.eps[stack.pop()]:
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
        return seen

    def fullmatch(self, name):
        cur = self._closure({self.start})
        for ch in name:
            cur = self._closure({t for s in cur for test, t in self.trans[s] if test(ch)})
            if not cur:
                return False
        return self.end in cur


# --- 14.1 step 4: bounds -----------------------------------------------------------------------------------

CONTROL = (set(range(0x00, 0x20)) | {0x7F} | set(range(0x80, 0xA0)) | {0x2028, 0x2029}
           | set(range(0x202A, 0x202F)) | set(range(0x2066, 0x206A)) | {0x200E, 0x200F, 0x061C})


def has_control(s):
    return any(ord(c) in CONTROL for c in s)


def walk(value, path, depth):
    if isinstance(value, (dict, list)) and depth > 32:   # the manifest object itself is level 1
        fail("ManifestError", f"field {path!r}: nested deeper than 32")
    if isinstance(value, str):
        if len(value) > 65536 or has_surrogate(value):
            fail("ManifestError", f"field {path!r}: string")
    elif isinstance(value, dict):
        for k, v in value.items():
            if len(k) > 65536 or has_surrogate(k):
                fail("ManifestError", f"field {path!r}: key")
            walk(v, f"{path}.{k}" if path else k, depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            walk(v, f"{path}.{i}", depth + 1)


def get(m, dotted, default=None):
    for part in dotted.split("."):
        if not isinstance(m, dict) or part not in m:
            return default
        m = m[part]
    return m


def names_bound(names, field):
    if not isinstance(names, list) or len(names) > 100_000:
        fail("ManifestError", f"field {field!r}")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not 1 <= len(name) <= 512:
            fail("ManifestError", f"field '{field}.{i}'")
        if has_control(name):
            fail("ManifestError", f"field '{field}.{i}': control character")
    if len(set(map(printed_form, names))) != len(names):
        fail("ManifestError", f"field {field!r}: not unique as printed")


# 14.1 step 4: the allowed joiners and variation selectors, left out of a name's printed form
JOINERS = {0x200C, 0x200D} | set(range(0x180B, 0x1810)) | set(range(0xFE00, 0xFE10)) | set(range(0xE0100, 0xE01F0))


def printed_form(name):
    visible = "".join(c for c in name if ord(c) not in JOINERS)
    return " ".join(unicodedata.normalize("NFC", visible).split())


def tokenizer_units(text):
    # 14.1 step 4: runs between the whitespace str.split() keeps; non-ASCII whitespace, and whitespace
    # following one that is not ASCII, counts as a letter of as many UTF-8 bytes.
    units, run, prev_non_ascii = 0, 0, False
    for ch in text:
        if ch.isspace() and ch.isascii() and not prev_non_ascii:
            units += run * run
            run = 0
        else:
            run += len(ch.encode("utf-8"))
        prev_non_ascii = not ch.isascii()
    return units + run * run


def check_bounds(m, file_size):
    walk(m, "", 1)

    def num_in(field, lo, hi, integer=False):
        v = get(m, field)
        if v is None:
            return
        if (integer and not is_int(v)) or not is_num(v) or not lo <= v <= hi:
            fail("ManifestError", f"field {field!r}")

    names = m.get("class_names")
    if names is not None:
        names_bound(names, "class_names")
    folders = get(m, "provenance.class_folders")
    if folders is not None:
        names_bound(folders, "provenance.class_folders")
        if isinstance(names, list) and len(folders) != len(names):
            fail("ManifestError", "field 'provenance.class_folders': count")
    num_in("images.count", 0, file_size // 8, integer=True)
    ch = get(m, "images.channels")
    if ch is not None and not is_int(ch):
        fail("ManifestError", "field 'images.channels'")
    num_in("images.height", 0, 8192, integer=True)
    num_in("images.width", 0, 8192, integer=True)
    count, h, w = (get(m, f"images.{k}") for k in ("count", "height", "width"))
    geometry_known = all(is_int(v) for v in (count, ch, h, w))
    if geometry_known and count * ch * h * w > 1024 * file_size:
        fail("ManifestError", "field 'images': decoded bytes exceed 1,024 x the file size")
    scratch = {"png": 8, "jpeg": 12, "webp": 16}.get(get(m, "images.codec"))
    if scratch and is_int(h) and is_int(w) and scratch * h * w > 1024 * file_size:
        fail("ManifestError", "field 'images': decoder scratch")
    ipc = m.get("ipc")
    if is_int(ipc) and is_int(count) and ipc > count:
        fail("ManifestError", "field 'ipc'")
    size = get(m, "base.image_size")
    if isinstance(size, list):
        if len(size) != 2:
            fail("ManifestError", "field 'base.image_size'")
        for i, v in enumerate(size):
            if is_num(v) and v > 8192:
                fail("ManifestError", f"field 'base.image_size.{i}'")
    elif is_num(size) and size > 8192:
        fail("ManifestError", "field 'base.image_size'")
    for field in ("recipe.student_image_size", "recipe.augment.output_size"):
        v = get(m, field)
        if is_num(v) and v > 8192:
            fail("ManifestError", f"field {field!r}")
    for field, lo, hi in (("base.mean", -10, 10), ("base.std", 0.001, 1000)):
        v = get(m, field)
        if v is None:
            continue
        if not isinstance(v, list) or len(v) != 3:
            fail("ManifestError", f"field {field!r}")
        for i, x in enumerate(v):
            if not is_num(x) or not lo <= x <= hi:
                fail("ManifestError", f"field '{field}.{i}'")
    for sec in ("lora", "head.lora"):
        s = get(m, sec)
        if not isinstance(s, dict):
            continue
        num_in(f"{sec}.r", -math.inf, 4096)
        num_in(f"{sec}.lora_alpha", -math.inf, 1e6)
        num_in(f"{sec}.group_size", 1, 65536)
        shapes = s.get("shapes")
        if isinstance(shapes, dict):
            if len(shapes) > 100_000:
                fail("ManifestError", f"field '{sec}.shapes'")
            for k, shape in shapes.items():
                if (len(k) > 1024 or not isinstance(shape, list) or len(shape) > 8
                        or not all(is_int(d) and 0 <= d <= 2 ** 31 - 1 for d in shape)
                        or math.prod(max(d, 1) for d in shape) > 2 ** 59):
                    fail("ManifestError", f"field '{sec}.shapes.{k[:40]}'")
    lora = m.get("lora")
    if isinstance(lora, dict):
        targets = lora.get("target_modules")
        if isinstance(targets, str):
            try:
                Pattern(targets)
            except ValueError as e:
                fail("ManifestError", f"field 'lora.target_modules': not a supported target pattern ({e})")
        elif isinstance(targets, list):
            if len(targets) > 1000 or not all(isinstance(t, str) and len(t) <= 512 for t in targets):
                fail("ManifestError", "field 'lora.target_modules'")
        for key, bound in (("rank_pattern", 4096), ("alpha_pattern", 1e6)):
            pats = lora.get(key)
            if not isinstance(pats, dict):
                continue
            if len(pats) > 1000:
                fail("ManifestError", f"field 'lora.{key}'")
            for k, v in pats.items():
                try:
                    Pattern(k)
                except ValueError as e:
                    fail("ManifestError", f"field 'lora.{key}': {k[:40]!r} is not a supported target pattern ({e})")
                if is_num(v) and v > bound:
                    fail("ManifestError", f"field 'lora.{key}.{k[:40]}'")
    templates = get(m, "head.templates")
    if isinstance(templates, list):
        if len(templates) > 1000:
            fail("ManifestError", "field 'head.templates'")
        for i, t in enumerate(templates):
            if (not isinstance(t, str) or len(t) > 512 or t.count("{}") != 1
                    or t.count("{") != 1 or t.count("}") != 1 or has_control(t)):
                fail("ManifestError", f"field 'head.templates.{i}'")
        if isinstance(names, list):
            if len(names) * len(templates) > 1_000_000:
                fail("ManifestError", "field 'head.templates': prompts")
            cost = sum(tokenizer_units(t.replace("{}", n)) for t in templates for n in names)
            if cost > 2 ** 28:
                fail("ManifestError", "field 'head.templates': tokenizer cost")
    num_in("head.logit_scale", 1e-4, 1e4)
    num_in("recipe.epochs", -math.inf, 1e6)
    num_in("recipe.batch_size", -math.inf, 1e6)
    num_in("recipe.temperature", 1e-2, 1e3)
    num_in("recipe.lr", -math.inf, 10)
    num_in("recipe.weight_decay", -math.inf, 10)
    num_in("recipe.beta", -math.inf, 1e3)
    augment = get(m, "recipe.augment")
    if isinstance(augment, dict):
        check_augment(augment, h, w)
        out = augment.get("output_size")
        vh, vw = (out, out) if is_int(out) else (h, w)
        if geometry_known and is_int(vh):
            need = count * ch * vh * (4 * vw + 8 * max(w, vw))
            if need > max(1024 * file_size, 2 ** 28):
                fail("ManifestError", "field 'recipe.augment': student views")
    tensors = get(m, "integrity.tensors")
    if isinstance(tensors, dict) and len(tensors) > 100_000:
        fail("ManifestError", "field 'integrity.tensors'")


def check_augment(a, h, w):
    def bad(key):
        fail("ManifestError", f"field 'recipe.augment.{key}'")

    out = a.get("output_size")
    if out is not None and not (is_int(out) and 1 <= out <= 8192):
        bad("output_size")
    for key in ("scale", "ratio"):
        if key in a:
            v = a[key]
            if (not isinstance(v, list) or len(v) != 2
                    or not all(is_num(x) and math.isfinite(x) and x > 0 for x in v) or v[0] > v[1]):
                bad(key)
            if key == "scale" and v[1] > 1:
                bad(key)
    for key in ("hflip", "cutmix", "mixup"):
        if key in a and not (is_num(a[key]) and 0 <= a[key] <= 1):
            bad(key)
    for key in ("cutmix_alpha", "mixup_alpha"):
        if key in a and not (is_num(a[key]) and 0 < a[key] <= 1e6):
            bad(key)
    if "patch_shuffle" in a:
        p = a["patch_shuffle"]
        if not (is_int(p) and 0 <= p <= 64) or (p > 1 and is_int(h) and is_int(w) and p > min(h, w)):
            bad("patch_shuffle")


# --- 6: JSON Schema ----------------------------------------------------------------------------------------

def _pattern(validator, pattern, instance, schema):
    if isinstance(instance, str):
        final_dollar = pattern.endswith("$") and not Pattern._escaped(pattern, len(pattern) - 1)
        ecma = pattern[:-1] + r"\Z" if final_dollar else pattern   # section 6: ECMA-262 '$' is the very end
        if not re.search(ecma, instance):
            yield jsonschema.ValidationError(f"{instance[:40]!r} does not match {pattern!r}")


_checker = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda checker, v: is_int(v))
Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _pattern}, type_checker=_checker)
VALIDATOR = Validator(SCHEMA)


# --- 7: consistency ----------------------------------------------------------------------------------------

def tensor_bytes(data, start, entry):
    b, e = entry["data_offsets"]
    return data[start + b:start + e]


def checked(data, start, tensors, manifest, name):
    raw = tensor_bytes(data, start, tensors[name])
    if hashlib.sha256(raw).hexdigest() != manifest["integrity"]["tensors"][name]:
        fail("IntegrityError", f"tensor {name!r}: sha256 mismatch")
    return raw


def version_tuple(v):
    major, minor = v.split(".")
    return int(major), int(minor)


def check_consistency(m, tensors, data, start):
    def want(name, dtype, shape):
        t = tensors.get(name)
        if t is None:
            fail("ManifestError", f"tensor {name!r} is missing")
        if t["dtype"] != dtype or (shape is not None and t["shape"] != shape):
            fail("ManifestError", f"tensor {name!r} is {t['dtype']} {t['shape']}, expected {dtype} {shape}")

    version = version_tuple(m["format_version"])
    names = set(tensors)
    if set(m["integrity"]["tensors"]) != names:
        fail("ManifestError", "integrity.tensors does not name exactly the tensors")
    n, c = m["images"]["count"], len(m["class_names"])
    # 2. labels
    want("labels", "I64", [n])
    labels = np.frombuffer(checked(data, start, tensors, m, "labels"), "<i8")
    if labels.size and (labels.min() < 0 or labels.max() >= c):
        fail("ManifestError", "tensor 'labels': value out of range")
    if m["ipc"] is not None:
        if n != m["ipc"] * c or np.any(np.bincount(labels, minlength=c) != m["ipc"]):
            fail("ManifestError", "tensor 'labels': not ipc images per class")
    # 3. images
    codec, ch, h, w = (m["images"][k] for k in ("codec", "channels", "height", "width"))
    if codec == "raw":
        want("images.data", "U8", [n, ch, h, w])
        if "images.offsets" in tensors:
            fail("ManifestError", "raw images with images.offsets")
        offsets = None
    else:
        want("images.data", "U8", None)
        if len(tensors["images.data"]["shape"]) != 1:
            fail("ManifestError", "tensor 'images.data' is not 1-D")
        want("images.offsets", "I64", [n + 1])
        offsets = np.frombuffer(checked(data, start, tensors, m, "images.offsets"), "<i8")
        total = tensors["images.data"]["shape"][0]
        if offsets[0] != 0 or offsets[-1] != total or np.any(np.diff(offsets) <= 0):
            fail("ManifestError", "tensor 'images.offsets' breaks section 3's rules")
    # 4, 7. encoder LoRA
    lora = m["lora"]
    enc = {k for k in names if k.startswith("encoder_lora.")}
    if (lora is None) != (not enc):
        fail("ManifestError", "lora is null iff no encoder_lora.* tensors")
    if lora is not None:
        check_encoder_lora(lora, enc, tensors, version)
    # 5, 7. head
    hl = m["head"]["lora"]
    head_pair = {"head.lora_A", "head.lora_B"} & names
    if (hl is None) != (not head_pair):
        fail("ManifestError", "head.lora is null iff head.lora_A/B exist")
    d = None
    if hl is not None:
        if head_pair != {"head.lora_A", "head.lora_B"}:
            fail("ManifestError", "head.lora_A without head.lora_B or vice versa")
        shapes = section_shapes(hl, "head.lora", {"lora_A": "head.lora_A", "lora_B": "head.lora_B"}, tensors, version)
        a, b = shapes["head.lora_A"], shapes["head.lora_B"]
        if len(a) != 2 or a[0] != hl["r"]:
            fail("ManifestError", f"tensor 'head.lora_A' has shape {a}, expected [{hl['r']}, d]")
        if b != [c, hl["r"]]:
            fail("ManifestError", f"tensor 'head.lora_B' has shape {b}, expected [{c}, {hl['r']}]")
        d = a[1]
    stray = {k for k in names if k.endswith(".scales") and k.startswith("head.")}
    if (hl is None or hl["dtype"] not in ("int8", "int4")) and stray:
        fail("ManifestError", f"tensor {sorted(stray)[0]!r}: scales without quantised deltas")
    # 6, 8. base
    base = m["base"]
    base_tensors = {k for k in names if k.startswith("base.")}
    if (base["source"] == "embedded") != bool(base_tensors):
        fail("ManifestError", "base.source is 'embedded' iff base.* tensors exist")
    if "embedded" in base:
        if version < (1, 1):
            fail("ManifestError", f"'base.embedded' is {base['embedded']!r}, which needs format_version 1.1")
        if base["source"] != "embedded":
            fail("ManifestError", f"'base.embedded' is {base['embedded']!r} but base.source is {base['source']!r}")
    if base.get("embedded") == "visual":
        outside = sorted(k for k in base_tensors if not k.startswith("base.visual."))
        if outside:
            fail("ManifestError", f"tensor {outside[0]!r} is not part of the image tower")
        t = tensors.get("head.weight")
        if t is None or t["dtype"] != "F32" or len(t["shape"]) != 2 or t["shape"][0] != c or t["shape"][1] < 1:
            fail("ManifestError", "tensor 'head.weight' must be F32 [C, d]")
        if d is not None and t["shape"][1] != d:
            fail("ManifestError", "tensor 'head.weight' width differs from head.lora_A's")
    elif "head.weight" in names:
        fail("ManifestError", "tensor 'head.weight' without base.embedded 'visual'")
    return offsets


def section_shapes(sec, field, keys, tensors, version):
    """Logical shapes of a section's deltas ({tensor name: shape}); checks dtypes and the 1.1 storage."""
    quantised = sec["dtype"] in ("int8", "int4")
    dtype = LORA_DTYPES[sec["dtype"]]
    for name in keys.values():
        if tensors[name]["dtype"] != dtype:
            fail("ManifestError", f"tensor {name!r} is {tensors[name]['dtype']}, {field}.dtype is {sec['dtype']}")
    if not quantised:
        for name in keys.values():
            if name + ".scales" in tensors:
                fail("ManifestError", f"tensor '{name}.scales' with a float dtype")
        return {name: tensors[name]["shape"] for name in keys.values()}
    if version < (1, 1):
        fail("ManifestError", f"{field}.dtype {sec['dtype']!r} needs format_version 1.1")
    shapes = sec["shapes"]
    if set(shapes) != set(keys):
        fail("ManifestError", f"{field}.shapes does not list exactly the section's deltas")
    out = {}
    for key, name in keys.items():
        n = math.prod(shapes[key])
        stored = [n] if sec["dtype"] == "int8" else [(n + 1) // 2]
        if tensors[name]["shape"] != stored:
            t = tensors[name]
            fail("ManifestError", f"tensor {name!r} is {t['dtype']} {t['shape']}, expected {stored}")
        sc = tensors.get(name + ".scales")
        groups = -(-n // sec["group_size"])
        if sc is None or sc["dtype"] != "F16" or sc["shape"] != [groups]:
            fail("ManifestError", f"tensor '{name}.scales' must be F16 [{groups}]")
        out[name] = list(shapes[key])
    return out


KEY = re.compile(r"base_model\.model\.(.+)\.lora_([AB])\.weight\Z", re.S)


def check_encoder_lora(lora, enc, tensors, version):
    quantised = lora["dtype"] in ("int8", "int4")
    deltas = {}
    for name in enc:
        key = name[len("encoder_lora."):]
        if quantised and key.endswith(".scales"):
            continue
        mt = KEY.match(key)
        if not mt:
            fail("ManifestError", f"tensor {name!r} is not a peft LoRA key")
        deltas[key] = (mt.group(1), mt.group(2))
    shapes = section_shapes(lora, "lora", {k: "encoder_lora." + k for k in deltas}, tensors, version)
    scales = {k for k in enc if k.endswith(".scales")}
    if quantised and scales != {"encoder_lora." + k + ".scales" for k in deltas}:
        fail("ManifestError", "encoder .scales tensors without their delta")
    modules = {}
    for key, (path, ab) in deltas.items():
        modules.setdefault(path, {})[ab] = shapes["encoder_lora." + key]
    paths = sorted(modules)
    targets = lora["target_modules"]
    total = sum(len(p) for p in paths)
    if isinstance(targets, str):
        pattern = Pattern(targets)
        if len(targets) * total + len(targets) ** 2 > 4_000_000:
            fail("ManifestError", "field 'lora.target_modules': matching costs too much")
        match = pattern.fullmatch
    else:
        if sum(len(t) for t in targets) * total > 4_000_000:
            fail("ManifestError", "field 'lora.target_modules': matching costs too much")
        match = lambda prefix: any(prefix == t or prefix.endswith("." + t) for t in targets)  # noqa: E731
    rank_keys = list(lora["rank_pattern"])
    suffix_total = sum(len(".".join(p.split(".")[j:])) for p in paths for j in range(len(p.split("."))))
    for key in ("rank_pattern", "alpha_pattern"):
        keys = list(lora[key])
        if sum(len(k) for k in keys) * suffix_total + sum(len(k) ** 2 for k in keys) > 4_000_000:
            fail("ManifestError", f"field 'lora.{key}': matching costs too much")
    rank_patterns = [(Pattern(k), lora["rank_pattern"][k]) for k in rank_keys]
    for path in paths:
        parts = path.split(".")
        if not any(match(".".join(parts[:j])) for j in range(1, len(parts) + 1)):
            fail("ManifestError", f"module {path!r} is not matched by lora.target_modules")
        pair = modules[path]
        if set(pair) != {"A", "B"}:
            fail("ManifestError", f"module {path!r} lacks its lora_{'B' if 'A' in pair else 'A'}")
        a, b = pair["A"], pair["B"]
        linear = len(a) == 2 and len(b) == 2
        conv = len(a) == 4 and len(b) == 4 and b[2:] == [1, 1]
        if not (linear or conv) or a[0] != b[1]:
            fail("ManifestError", f"module {path!r}: A {a} and B {b} are not a LoRA pair")
        owner = path[:-len(".base_layer.out_proj")] if path.endswith(".base_layer.out_proj") else path
        oparts = owner.split(".")
        rank = lora["r"]
        for pat, r in rank_patterns:
            if any(pat.fullmatch(".".join(oparts[j:])) for j in range(len(oparts))):
                rank = r
                break
        if a[0] != rank:
            fail("ManifestError", f"module {path!r} has rank {a[0]}, expected {rank}")


# --- 8, 14.1 step 6: verification ---------------------------------------------------------------------------

def as_float(raw, dtype):
    if dtype == "BF16":
        return (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(raw, FLOATS[dtype])


def verify(m, tensors, data, start):
    for name in sorted(tensors):
        checked(data, start, tensors, m, name)
    for name in sorted(tensors):
        t = tensors[name]
        if t["dtype"] in FLOATS and name.split(".")[0] in ("encoder_lora", "head", "base"):
            values = as_float(tensor_bytes(data, start, t), t["dtype"])
            if not np.all(np.isfinite(values)):
                fail("BundleError", f"tensor {name!r} holds NaN or infinity")
            if name.endswith(".scales") and np.any((values < 0) | (values > 1e4)):
                fail("BundleError", f"tensor {name!r} holds a scale outside [0, 10^4]")


# --- 9, 14.1 step 7: images ---------------------------------------------------------------------------------

PIL_FORMAT = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


def png_text_bytes(blob):
    total, i = 0, 8
    while i + 8 <= len(blob):
        length, kind = struct.unpack(">I4s", blob[i:i + 8])
        if kind == b"tEXt":
            total += length
        elif kind in (b"zTXt", b"iTXt"):
            total += 1032 * length
        if kind == b"IEND":
            break
        i += 12 + length
    return total


def decode_images(m, data, start, tensors, offsets):
    codec, ch, h, w = (m["images"][k] for k in ("codec", "channels", "height", "width"))
    if codec == "raw":
        return
    blob_all = tensor_bytes(data, start, tensors["images.data"])
    for i in range(len(offsets) - 1):
        blob = blob_all[offsets[i]:offsets[i + 1]]
        if codec == "jpeg" and blob.count(b"\xff\xda") > 64:
            fail("ImageDecodeError", f"image {i}: more than 64 scans")
        if codec == "png" and png_text_bytes(blob) > 1 << 20:
            fail("ImageDecodeError", f"image {i}: text chunks over 1 MiB")
        try:
            with Image.open(io.BytesIO(blob), formats=[PIL_FORMAT[codec]]) as im:
                if im.size != (w, h):
                    fail("ImageDecodeError", f"image {i} is {im.size[0]}x{im.size[1]}, not {w}x{h}")
                im.convert("L" if ch == 1 else "RGB").load()
        except Refused:
            raise
        except Exception as e:  # noqa: BLE001 - any decoder failure
            fail("ImageDecodeError", f"image {i} does not decode as {codec}: {e}")


# --- the whole open --------------------------------------------------------------------------------------

def open_bundle(data):
    file_size = len(data)
    meta, tensors, start = read_container(data)
    # 2. metadata
    if not meta or meta.get("format") != "hello" or "hello.manifest" not in meta or "hello.manifest.sha256" not in meta:
        fail("ManifestError", "not a .hello bundle (no hello metadata)")
    text = meta["hello.manifest"]
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != meta["hello.manifest.sha256"]:
        fail("IntegrityError", "manifest sha256 mismatch")
    m = strict_json(text, "ManifestError")
    if not isinstance(m, dict):
        fail("ManifestError", "manifest is not an object")
    # 5. version
    v = m.get("format_version")
    if not isinstance(v, str) or len(v) > 32 or not re.fullmatch(r"[0-9]+\.[0-9]+", v):
        fail("ManifestError", "field 'format_version'")
    major = int(v.split(".")[0])
    if major not in (1, 2):
        fail("UnsupportedVersionError", f"major {major}")
    if major >= 2:
        req = m.get("requires")
        if req is None:
            fail("ManifestError", "'requires' is missing")
        if (not isinstance(req, list) or len(req) > 16 or not all(isinstance(r, str) and 1 <= len(r) <= 40 for r in req)
                or len(set(req)) != len(req)):
            fail("ManifestError", "field 'requires'")
        for r in req:
            if r not in FEATURES:
                fail("UnsupportedVersionError", f"required feature {r!r}")
    elif "requires" in m:
        fail("ManifestError", "a 1.x file must not have 'requires'")
    # 14.1 step 4, 6
    check_bounds(m, file_size)
    errors = sorted(VALIDATOR.iter_errors(m), key=lambda e: list(e.absolute_path))
    if errors:
        fail("ManifestError", f"field {'.'.join(map(str, errors[0].absolute_path))!r}: {errors[0].message}")
    # 5: must-understand features used exactly
    uses = {"prior_mix"} if "prior_weight" in m["head"] else set()
    if uses and major < 2:
        fail("ManifestError", "head.prior_weight needs format_version 2.0")
    if major >= 2 and set(m["requires"]) != uses:
        fail("ManifestError", "requires does not list exactly the features the file uses")
    offsets = check_consistency(m, tensors, data, start)
    return m, tensors, start, offsets


# --- 3.3: quantised deltas, dequantised ------------------------------------------------------------------------

def dequantised_deltas(path: pathlib.Path) -> dict[str, np.ndarray]:
    """Section 1 and 3.3 of spec/format.md, in numpy: every quantised delta of the file, dequantised."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    manifest = json.loads(header["__metadata__"]["hello.manifest"])
    body = data[8 + n:]

    def raw(name, dtype):
        begin, end = header[name]["data_offsets"]
        return np.frombuffer(body[begin:end], dtype=dtype)

    out = {}
    for prefix, section in (("encoder_lora.", manifest["lora"]), ("head.", manifest["head"]["lora"])):
        if section["dtype"] not in ("int8", "int4"):
            continue
        size = section["group_size"]
        for key, shape in section["shapes"].items():
            count = math.prod(shape)
            if section["dtype"] == "int8":
                q = raw(prefix + key, "<i1").astype(np.float32)
            else:
                packed = raw(prefix + key, "<u1")
                nibbles = np.empty(2 * len(packed), dtype=np.int16)
                nibbles[0::2], nibbles[1::2] = packed & 0x0F, packed >> 4
                q = (nibbles[:count] - 8).astype(np.float32)
            scales = raw(prefix + key + ".scales", "<f2").astype(np.float32)
            out[prefix + key] = (q * scales[np.arange(count) // size]).reshape(shape)
    return out


def refusal(path):
    """The Refused that opening, verifying and decoding the file raises, or None for a valid file."""
    data = pathlib.Path(path).read_bytes()
    try:
        m, tensors, start, offsets = open_bundle(data)
        verify(m, tensors, data, start)
        decode_images(m, data, start, tensors, offsets)
    except Refused as e:
        return e
    return None


def check(path):
    refused = refusal(path)
    return "valid" if refused is None else refused.cls


def explain(path):
    refused = refusal(path)
    return "valid" if refused is None else str(refused)


if __name__ == "__main__":
    import sys
    for p in sys.argv[1:]:
        print(pathlib.Path(p).name, "->", explain(p))
