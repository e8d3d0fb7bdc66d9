"""Hostile bundles: build the issue-11 attack files (and later audits') and time `hello info` / `hello verify` on them.

    python bench/hostile.py [--checkout DIR] [--out DIR] [--timeout S] [--scale small|issue]

The files are written with plain json/struct/zlib (no hello import), so the same files can be run
against any checkout (``--checkout`` is put first on PYTHONPATH). Each command runs under
``/usr/bin/time -v`` in its own process; the table gives wall time, peak resident memory, the
characters it printed and its verdict line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import struct
import subprocess
import sys
import tempfile
import zlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCALES = {  # the sizes, and smaller ones that finish quickly on a "before" checkout
    "small": {"regex_chars": 18, "class_items": 2500, "bomb_side": 13000, "bomb_blobs": 8, "geometry_images": 2,
              "nested_lists": (150_000, 10), "augment_keys": (50, 60_000), "schema_strings": 60},
    "issue": {"regex_chars": 21, "class_items": 5000, "bomb_side": 13000, "bomb_blobs": 32, "geometry_images": 3,
              "nested_lists": (1_500_000, 27), "augment_keys": (200, 60_000), "schema_strings": 150},
}


def png(width: int, height: int, bit_depth: int = 8, color_type: int = 2) -> bytes:
    """A black PNG of any size; with bit depth 1 a 13000 x 13000 image compresses to ~20 KB."""
    channels = {0: 1, 2: 3}[color_type]
    row = b"\0" + bytes((width * channels * bit_depth + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def manifest(class_names, count: int, height: int, width: int, lora=None) -> dict:
    return {
        "format_version": "1.0", "class_names": class_names, "ipc": None,
        "images": {"count": count, "channels": 3, "height": height, "width": width, "codec": "png", "quality": None},
        "base": {"source": "local", "architecture": "hello-tiny-vit", "pretrained": None, "checkpoint": "x.safetensors",
                 "config": None, "fingerprint": "sha256:" + "0" * 64, "image_size": 32,
                 "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        "lora": lora,
        "head": {"templates": ["a photo of a {}."], "ensemble": "mean", "normalize_features": True,
                 "logit_scale": 100.0, "lora": None},
        "recipe": {"augment": {}, "loss": "mse_ce", "temperature": 20.0, "beta": 0.1, "epochs": 300,
                   "batch_size": 64, "optimizer": "adamw", "lr": 0.001, "weight_decay": 0.01,
                   "student_image_size": None},
        "provenance": {"source_dataset": "bench", "teacher": "none",
                       "builder": {"name": "bench/hostile.py", "version": "1", "options": {}}, "timings": {}},
    }


def write_bundle(path: pathlib.Path, man: dict, tensors: dict[str, tuple[str, list, bytes]], *,
                 ascii_manifest: bool = False) -> None:
    """A safetensors file with a correctly hashed manifest (tensors: name -> (dtype, shape, bytes));
    ``ascii_manifest``: non-ASCII characters as JSON escapes (a lone surrogate survives only so)."""
    man = dict(man, integrity={"algorithm": "sha256", "tensors": {
        name: hashlib.sha256(raw).hexdigest() for name, (_, _, raw) in sorted(tensors.items())}})
    text = json.dumps(man, sort_keys=True, separators=(",", ":"), ensure_ascii=ascii_manifest)
    header, offset = {}, 0
    for name, (dtype, shape, raw) in sorted(tensors.items()):
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    header["__metadata__"] = {"format": "hello", "hello.manifest": text,
                              "hello.manifest.sha256": hashlib.sha256(text.encode()).hexdigest()}
    encoded = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as file:
        file.write(struct.pack("<Q", len(encoded)) + encoded)
        for name in sorted(tensors):
            file.write(tensors[name][2])


def image_tensors(blobs: list[bytes], num_classes: int) -> dict:
    offsets = [0]
    for blob in blobs:
        offsets.append(offsets[-1] + len(blob))
    labels = [i % num_classes for i in range(len(blobs))]
    return {"images.data": ("U8", [offsets[-1]], b"".join(blobs)),
            "images.offsets": ("I64", [len(offsets)], struct.pack(f"<{len(offsets)}q", *offsets)),
            "labels": ("I64", [len(labels)], struct.pack(f"<{len(labels)}q", *labels))}


def build_cases(out: pathlib.Path, scale: dict) -> list[tuple[str, str, pathlib.Path]]:
    """(case, hello subcommand, file) for each attack."""
    small = [png(32, 32)] * 3
    names = ["cat", "dog", "bird"]
    write_bundle(out / "baseline.hello", manifest(names, 3, 32, 32), image_tensors(small, 3))
    cases = [("baseline: a valid 3-image bundle (the import floor)", "verify", out / "baseline.hello")]

    chars = scale["regex_chars"]
    module = "a" * (chars - 1) + "b"
    lora = {"peft_type": "LORA", "module_root": "visual", "target_modules": "((a+)+)+", "r": 2, "lora_alpha": 4,
            "rank_pattern": {}, "alpha_pattern": {}, "lora_dropout": 0.0, "bias": "none", "dtype": "float16"}
    key = f"encoder_lora.base_model.model.{module}.lora_"
    tensors = {**image_tensors(small, 3), key + "A.weight": ("F16", [2, 4], bytes(16)),
               key + "B.weight": ("F16", [4, 2], bytes(16))}
    write_bundle(out / "regex.hello", manifest(names, 3, 32, 32, lora), tensors)
    cases.append((f"regex target_modules, {chars}-char module", "info", out / "regex.hello"))

    items = scale["class_items"]
    write_bundle(out / "class_names.hello", manifest([{"n": i} for i in range(items)], 3, 32, 32), image_tensors(small, 3))
    cases.append((f"class_names: {items:,} objects", "info", out / "class_names.hello"))

    side, bombs = scale["bomb_side"], scale["bomb_blobs"]
    bomb = png(side, side, bit_depth=1, color_type=0)
    blobs = [bomb] * bombs + small
    write_bundle(out / "png_bomb.hello", manifest(names, len(blobs), 32, 32), image_tensors(blobs, 3))
    cases.append((f"{bombs} PNG blobs of {side}x{side} ({len(bomb):,} B each) under 32x32", "verify",
                  out / "png_bomb.hello"))

    count = scale["geometry_images"]
    write_bundle(out / "geometry.hello", manifest(names[:count], count, side, side), image_tensors([bomb] * count, count))
    cases.append((f"geometry 3x{side}x{side}, {count} small blobs", "verify", out / "geometry.hello"))

    lists, depth = scale["nested_lists"]
    nested = manifest(names, 3, 32, 32)
    nested["recipe"]["augment"] = {"scale": [json.loads("[" * depth + "0" + "]" * depth)] * lists}
    write_bundle(out / "nested_lists.hello", nested, image_tensors(small, 3))
    cases.append((f"recipe.augment.scale: {lists:,} lists {depth} deep", "info", out / "nested_lists.hello"))

    keys, chars = scale["augment_keys"]
    unknown = manifest(names, 3, 32, 32)
    unknown["recipe"]["augment"] = {f"k{i:05d}" + "Z" * chars: 1 for i in range(keys)}
    write_bundle(out / "augment_keys.hello", unknown, image_tensors(small, 3))
    cases.append((f"recipe.augment: {keys} unknown keys of {chars:,} characters", "info", out / "augment_keys.hello"))

    strings = scale["schema_strings"]
    wrong = manifest(names, 3, 32, 32)
    wrong["ipc"] = ["\u0378" * 65_536] * strings   # unassigned: its repr is 6 characters for 2 UTF-8 bytes
    write_bundle(out / "schema_repr.hello", wrong, image_tensors(small, 3))
    cases.append((f"ipc: an array of {strings} strings of 65,536 unassigned characters", "info",
                  out / "schema_repr.hello"))

    optimizer = manifest(names, 3, 32, 32)
    optimizer["recipe"]["optimizer"] = "O" * 65_536
    write_bundle(out / "optimizer.hello", optimizer, image_tensors(small, 3))
    cases.append(("recipe.optimizer: 65,536 characters", "info", out / "optimizer.hello"))

    write_bundle(out / "surrogate.hello", manifest(["ca\ud800t", "dog", "bird"], 3, 32, 32), image_tensors(small, 3),
                 ascii_manifest=True)
    cases.append(("a lone UTF-16 surrogate in a class name", "info", out / "surrogate.hello"))
    return cases


def measure(command: list[str], env: dict, cwd: str, timeout: float) -> dict:
    """Wall time, peak RSS and the verdict line of ``command`` under /usr/bin/time -v, run in ``cwd``
    (``python -m`` puts the working directory first on sys.path)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        try:
            done = subprocess.run(["/usr/bin/time", "-v", "-o", report.name, *command], env=env, cwd=cwd,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"seconds": f">{timeout:.0f}", "peak_mb": "n/a", "exit": "killed", "printed": "n/a", "output": "timed out"}
        fields = dict(line.strip().rsplit(": ", 1) for line in report.read().splitlines() if ": " in line)
    wall = fields.get("Elapsed (wall clock) time (h:mm:ss or m:ss)", "0:0")
    seconds = sum(float(part) * 60 ** i for i, part in enumerate(reversed(wall.split(":"))))
    lines = (done.stdout + done.stderr).strip().splitlines()
    verdict = [line for line in lines if line.startswith(("ok:", "error:", "file:", "Traceback"))] or lines or [""]
    return {"seconds": f"{seconds:.2f}", "peak_mb": f"{int(fields.get('Maximum resident set size (kbytes)', 0)) / 1024:.0f}",
            "exit": done.returncode, "printed": f"{len(done.stdout) + len(done.stderr):,}", "output": verdict[-1][:110]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", default=str(ROOT), help="The hello source tree to run (default: this one).")
    parser.add_argument("--out", default=None, help="Where to write the attack files (default: a temporary folder).")
    parser.add_argument("--timeout", type=float, default=120.0, help="Seconds before a command is killed.")
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    args = parser.parse_args()
    args.checkout = str(pathlib.Path(args.checkout).resolve())
    env = {**os.environ, "PYTHONPATH": args.checkout, "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory(prefix="hello-hostile-") as tmp:
        out = pathlib.Path(args.out or tmp)
        out.mkdir(parents=True, exist_ok=True)
        print(f"checkout {args.checkout}; files in {out}")
        print("| case | command | file bytes | seconds | peak RSS MB | exit | characters printed | verdict line |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for case, subcommand, path in build_cases(out, SCALES[args.scale]):
            result = measure([sys.executable, "-m", "hello_format.cli", subcommand, str(path)], env, args.checkout,
                             args.timeout)
            print(f"| {case} | hello {subcommand} | {path.stat().st_size:,} | {result['seconds']} | {result['peak_mb']} | "
                  f"{result['exit']} | {result['printed']} | {result['output'].replace('|', '/')} |", flush=True)


if __name__ == "__main__":
    main()
