"""LoRA target patterns from files, matched in linear time (spec section 14.2, "Target patterns").

A bundle's ``lora.target_modules`` (a string) and the keys of ``rank_pattern`` / ``alpha_pattern``
are peft regular expressions, but a backtracking engine (Python's ``re``, which peft uses) can take
exponential time on a crafted one. Here they are parsed in a small regular-expression subset and
matched by simulating the automaton (a Pike VM): time O(len(pattern) x len(name)) whatever both are.
Only explicit module names are ever handed to peft.

Subset: literal characters, ``.``, escapes ``\\d`` ``\\w`` and ``\\<punctuation>``, classes ``[...]``
(ranges, ``^`` negation, ``\\d`` ``\\w`` inside), groups ``(...)`` / ``(?:...)``, ``|``, and the
quantifiers ``?`` ``*`` ``+``; a leading ``^`` and a trailing ``$`` are accepted and mean nothing
(matching is always whole-name). ``\\d`` and ``\\w`` are ASCII (module paths are ASCII).
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from hello_format.limits import MAX_PATTERN_CHARS, MAX_PATTERN_NESTING

_DIGITS = frozenset(string.digits)
_WORD = frozenset(string.ascii_letters + string.digits + "_")
_SPECIAL = set("\\.^$|?*+()[]{}")


class PatternError(ValueError):
    """A pattern outside the supported subset (the message says where)."""


@dataclass(frozen=True)
class _CharSet:
    chars: frozenset
    ranges: tuple[tuple[str, str], ...] = ()
    negated: bool = False
    any: bool = False

    def __contains__(self, char: str) -> bool:
        if self.any:
            return char != "\n"
        found = char in self.chars or any(low <= char <= high for low, high in self.ranges)
        return found != self.negated


class _Parser:
    """Recursive descent over the subset, emitting Pike VM instructions with relative jumps:
    ("split", x, y) continues at pc + x and pc + y, ("jmp", x) at pc + x."""

    def __init__(self, pattern: str):
        self.text, self.at, self.depth = pattern, 0, 0

    def fail(self, why: str):
        raise PatternError(f"{why} at position {self.at} of {self.text!r}")

    def peek(self) -> str | None:
        return self.text[self.at] if self.at < len(self.text) else None

    def alternation(self) -> list:
        branches = [self.sequence()]
        while self.peek() == "|":
            self.at += 1
            branches.append(self.sequence())
        code = branches[-1]
        for branch in reversed(branches[:-1]):  # SPLIT a, b; a: branch; JMP end; b: rest
            code = [("split", 1, len(branch) + 2), *branch, ("jmp", len(code) + 1), *code]
        return code

    def sequence(self) -> list:
        code = []
        while self.peek() not in (None, "|", ")"):
            atom = self.atom()
            quantifier = self.peek()
            if quantifier in ("?", "*", "+"):
                self.at += 1
                if self.peek() in ("?", "*", "+", "{"):
                    self.fail("stacked or lazy quantifiers are not supported")
                atom = _quantify(atom, quantifier)
            elif quantifier == "{":
                self.fail("counted repetition {m,n} is not supported")
            code += atom
        return code

    def atom(self) -> list:
        char = self.text[self.at]
        self.at += 1
        if char == "(":
            if self.text.startswith("?:", self.at):
                self.at += 2
            elif self.peek() == "?":
                self.fail("only (?:...) groups are supported")
            self.depth += 1
            if self.depth > MAX_PATTERN_NESTING:
                self.fail(f"groups nest deeper than {MAX_PATTERN_NESTING}")
            inner = self.alternation()
            if self.peek() != ")":
                self.fail("unbalanced parenthesis")
            self.at += 1
            self.depth -= 1
            return inner
        if char == ".":
            return [("char", _CharSet(frozenset(), any=True))]
        if char == "[":
            return [("char", self.char_class())]
        if char == "\\":
            return [("char", self.escape())]
        if char in _SPECIAL:
            self.fail(f"unexpected {char!r}")
        return [("char", _CharSet(frozenset(char)))]

    def escape(self) -> _CharSet:
        char = self.peek()
        if char is None:
            self.fail("pattern ends with a backslash")
        self.at += 1
        if char == "d":
            return _CharSet(_DIGITS)
        if char == "w":
            return _CharSet(_WORD)
        if char in string.punctuation:
            return _CharSet(frozenset(char))
        self.fail(f"unsupported escape \\{char}")

    def range_follows(self) -> bool:
        """Whether a class member's next characters make it a range's start ("-" and not the class's end)."""
        return self.peek() == "-" and self.at + 1 < len(self.text) and self.text[self.at + 1] != "]"

    def char_class(self) -> _CharSet:
        negated = self.peek() == "^"
        self.at += negated
        chars, ranges = set(), []
        first = True
        while True:
            char = self.peek()
            if char is None:
                self.fail("unterminated character class")
            if char == "]" and not first:
                self.at += 1
                return _CharSet(frozenset(chars), tuple(ranges), negated)
            first = False
            if char == "\\":
                self.at += 1
                member = self.escape()
                if self.range_follows():   # Python's re reads [\.-9] as a range and refuses [\d-_]: a subset of one meaning
                    self.fail(f"a range from an escape {self.text[self.at - 2:self.at + 2]!r}")
                chars |= member.chars
                continue
            self.at += 1
            if self.range_follows():
                high = self.text[self.at + 1]
                if high < char or high == "\\":
                    self.fail(f"bad range {char}-{high}")
                ranges.append((char, high))
                self.at += 2
            else:
                chars.add(char)


def _quantify(atom: list, quantifier: str) -> list:
    n = len(atom)
    if quantifier == "?":
        return [("split", 1, n + 1), *atom]
    if quantifier == "*":
        return [("split", 1, n + 2), *atom, ("jmp", -(n + 1))]
    return [*atom, ("split", -n, 1)]


class TargetPattern:
    """A compiled target pattern, simulated as a set of automaton states (a bit mask): each name
    character costs at most one pass over the pattern's instructions."""

    def __init__(self, pattern: str):
        if not isinstance(pattern, str) or not pattern:
            raise PatternError("a target pattern must be a non-empty string")
        if len(pattern) > MAX_PATTERN_CHARS:
            raise PatternError(f"pattern of {len(pattern)} characters (at most {MAX_PATTERN_CHARS})")
        self.pattern = pattern
        body = pattern[1:] if pattern.startswith("^") else pattern
        escapes = len(body[:-1]) - len(body[:-1].rstrip("\\"))
        if body.endswith("$") and escapes % 2 == 0:   # an anchor, not an escaped "\\$"
            body = body[:-1]
        parser = _Parser(body)
        code = parser.alternation()
        if parser.at != len(body):
            parser.fail("unbalanced parenthesis")
        self.code = code + [("match",)]
        self._closures: dict[int, int] = {}   # computed when first needed: compiling stays O(len(pattern))
        self._match = 1 << (len(self.code) - 1)
        self._accepts: dict[str, int] = {}

    def fullmatch(self, name: str) -> bool:
        """Whether the pattern matches all of ``name``."""
        return bool(self._run(name, stop_at_dots=False))

    def matches_a_dot_prefix(self, name: str) -> bool:
        """Whether the pattern matches ``name`` or one of its prefixes ending before a ``.``
        (peft's rule for a module and the modules containing it), in one pass."""
        return bool(self._run(name, stop_at_dots=True))

    def _run(self, name: str, stop_at_dots: bool) -> int:
        states = self._closure(0)
        for char in name:
            if stop_at_dots and char == "." and states & self._match:
                return 1
            states = self._step(states, char)
            if not states:
                return 0
        return states & self._match

    def _step(self, states: int, char: str) -> int:
        accepts = self._accepts.get(char)
        if accepts is None:
            accepts = sum(1 << pc for pc, op in enumerate(self.code) if op[0] == "char" and char in op[1])
            self._accepts[char] = accepts
        live, following = states & accepts, 0
        while live:
            low = live & -live
            following |= self._closure(low.bit_length())   # the instruction after the one that matched
            live ^= low
        return following

    def _closure(self, start: int) -> int:
        """The char and match instructions reachable from ``start`` through jumps and splits (a mask)."""
        if start in self._closures:
            return self._closures[start]
        seen, stack, kept = set(), [start], 0
        while stack:
            pc = stack.pop()
            if pc in seen:
                continue
            seen.add(pc)
            op = self.code[pc]
            if op[0] == "jmp":
                stack.append(pc + op[1])
            elif op[0] == "split":
                stack += [pc + op[1], pc + op[2]]
            else:
                kept |= 1 << pc
        self._closures[start] = kept
        return kept
