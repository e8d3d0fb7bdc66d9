"""The share of a lengthening character among random ASCII letters, swept: ns per counted unit of the
tokenizer work bound against pure ASCII letters (bench/README.md, tokenizer_bound.py).

    python bench/results/tokenizer-bound/sweep.py > bench/results/tokenizer-bound/sweep.md
"""

import pathlib
import random
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
import tokenizer_bound  # noqa: E402  (imports hello_format before open_clip)
from open_clip.tokenizer import SimpleTokenizer  # noqa: E402

tokenizer, rng = SimpleTokenizer(), random.Random(1)
print("| share | character | cleaned units / counted | ns per counted unit | x ASCII letters |")
print("| --- | --- | --- | --- | --- |")
calibration = None
for share in (0, 1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2):
    for char in ("\u023a", "\u0130"):
        draw = tokenizer_bound.sprinkled(char, share)
        counted, actual, seconds = tokenizer_bound.measure(tokenizer, [tokenizer_bound.word(draw, rng, 512)
                                                                      for _ in range(20)])
        calibration = calibration or seconds / counted
        print(f"| {share:.3f} | U+{ord(char):04X} | {actual / counted:.2f} | {seconds / counted * 1e9:.1f} | "
              f"{seconds / counted / calibration:.2f} |", flush=True)
