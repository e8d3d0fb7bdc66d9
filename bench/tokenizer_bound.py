"""How the tokenizer work bound (spec 14.1, ``manifest.tokenizer_work``) compares with the time the real
tokenizer takes, for the words it counts too short.

    python bench/tokenizer_bound.py [--bytes 512] [--words 20] [--seed 0]

The bound counts a word's UTF-8 bytes as stored, but open_clip's tokenizer first cleans the text:
ftfy's NFC can lengthen a character up to 3x in bytes (a composition exclusion such as U+1D160, or a
mark that reorders before another and blocks its composition), and ``str.lower`` up to 1.5x (U+0130
into ``i`` and a mark, U+023A into a 3-byte letter); a word's work grows with its square. The bench
times the tokenizer (its cache cleared for every word) on random words of each family that the bound
counts at ``--bytes`` bytes, and prints the nanoseconds per counted unit beside those of random ASCII
letters, the costliest text per unit the bound was sized on. Then the largest growth of any one
character, from every code point.
"""

from __future__ import annotations

import argparse
import random
import string
import sys
import time
import unicodedata

import hello_format  # noqa: F401  (before open_clip: the torchvision shim)
from hello_format.manifest import tokenizer_work
from open_clip.tokenizer import SimpleTokenizer

MUSICAL = [chr(c) for c in range(0x1D15E, 0x1D165)]   # NFC: 2 or 3 code points of 4 bytes each
HEBREW = "\ufb2c\ufb2d\ufb2e\ufb2f\ufb30\ufb31\ufb4a\ufb4b\ufb4c"   # presentation forms: NFC up to 2x
ACCENTED, BLOCKING = "\u01d5\u01d6\u01d7\u01d8\u00e9\u00e8", "\u0323\u0330\u0334"   # marks that block composing


def letter(rng: random.Random) -> str:
    return rng.choice(string.ascii_lowercase)


def sprinkled(char: str, share: float):
    """A draw of ASCII letters with ``char`` as about ``share`` of them."""
    return lambda rng: char if rng.random() < share else letter(rng)


FAMILIES = {   # name: how to draw one character (or a short unit) of a word
    "random ASCII letters (the calibration)": letter,
    "ASCII letters and U+0130 (lower: i + U+0307)": lambda rng: letter(rng) + "\u0130",
    "ASCII letters and U+023A/U+023E (lower: 2 -> 3 bytes)": lambda rng: letter(rng) + rng.choice("\u023a\u023e"),
    "ASCII letters, one in 32 U+023A": sprinkled("\u023a", 1 / 32),
    "ASCII letters, one in 8 U+023A": sprinkled("\u023a", 1 / 8),
    "Devanagari nukta letters U+0958-095F (NFC 2x)": lambda rng: chr(rng.randrange(0x0958, 0x0960)),
    "Hebrew presentation forms (NFC up to 2x)": lambda rng: rng.choice(HEBREW),
    "musical symbols U+1D15E-1D164 (NFC up to 3x)": lambda rng: rng.choice(MUSICAL),
    "U+01D6 + U+0323 (composition blocked: 4 -> 7 bytes)": lambda rng: "\u01d6\u0323",
    "Latin letters with marks that block composition": lambda rng: rng.choice(ACCENTED) + rng.choice(BLOCKING),
}


def word(draw, rng: random.Random, target: int) -> str:
    text = ""
    while len(text.encode("utf-8")) < target:
        text += draw(rng)
    return text


def measure(tokenizer: SimpleTokenizer, words: list[str]) -> tuple[float, float, float]:
    """(counted units, units of the cleaned text, seconds), summed over ``words``."""
    counted = sum(tokenizer_work([w], ["{}"]) for w in words)
    actual = sum(len(part.encode("utf-8")) ** 2 for w in words for part in tokenizer.clean_fn(w).split())
    start = time.perf_counter()
    for w in words:
        tokenizer.cache.clear()
        tokenizer.encode(w)
    return counted, actual, time.perf_counter() - start


def largest_growth() -> list[tuple[float, str]]:
    """Every code point's bytes after NFC and lowercasing over its bytes, the five largest."""
    grown = []
    for code in range(0x80, 0x110000):
        if 0xD800 <= code < 0xE000:
            continue
        char = chr(code)
        after = unicodedata.normalize("NFC", char).lower()
        ratio = len(after.encode("utf-8")) / len(char.encode("utf-8"))
        if ratio > 1:
            grown.append((ratio, f"U+{code:04X} {unicodedata.name(char, '?')}"))
    return sorted(grown, reverse=True)[:5]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=512, help="each word's UTF-8 bytes as stored")
    parser.add_argument("--words", type=int, default=20, help="random words per family")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    tokenizer, rng = SimpleTokenizer(), random.Random(args.seed)
    print(f"{args.words} random words of {args.bytes} stored bytes per family; open_clip SimpleTokenizer, "
          f"cache cleared per word; {sys.platform}, Python {sys.version.split()[0]}\n")
    print("| family | cleaned units / counted | ms per word | ns per counted unit | x calibration |")
    print("| --- | --- | --- | --- | --- |")
    calibration = None
    for name, draw in FAMILIES.items():
        counted, actual, seconds = measure(tokenizer, [word(draw, rng, args.bytes) for _ in range(args.words)])
        per_unit = seconds / counted * 1e9
        calibration = calibration or per_unit
        print(f"| {name} | {actual / counted:.2f} | {seconds / args.words * 1e3:.2f} | {per_unit:.1f} | "
              f"{per_unit / calibration:.2f} |", flush=True)
    print("\nlargest growth of one character's bytes under NFC and lowercasing (work grows with its square):")
    for ratio, name in largest_growth():
        print(f"  {ratio:.2f}x  {name}")


if __name__ == "__main__":
    main()
