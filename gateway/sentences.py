"""Split a token stream into speakable pieces as soon as each is complete."""

from __future__ import annotations

import re

_END = re.compile(r"(?<=[.!?。！？])[\"')\]]*\s+|\n+")
# A clause ends at a comma, semicolon, colon or dash (em, en, or a hyphen between spaces).
_CLAUSE = re.compile(r"(?<=[,;:—–])\s+|(?<=\s-)\s+")
_ABBREVIATIONS = ("mr.", "mrs.", "ms.", "dr.", "st.", "e.g.", "i.e.", "etc.", "vs.", "no.")
_MARKUP = re.compile(r"[*_`#>|~]+")


def speakable(text: str) -> str:
    """Text as it should be spoken: markdown markers removed, whitespace collapsed."""
    return " ".join(_MARKUP.sub(" ", text).split())


class SentenceSplitter:
    """push() deltas, get finished sentences; flush() at the end for the rest.

    The first piece may end at a clause boundary once it has ``first_clause_words`` words, so the
    first audio can start before the first full sentence is generated.
    """

    def __init__(self, first_clause_words: int = 4, min_chars: int = 2) -> None:
        self.buffer = ""
        self.first_clause_words = first_clause_words
        self.min_chars = min_chars
        self.emitted = 0

    def _cut(self, end: int) -> str | None:
        piece, self.buffer = self.buffer[:end], self.buffer[end:]
        spoken = speakable(piece)
        if len(spoken) < self.min_chars or not any(ch.isalnum() for ch in spoken):
            return None
        self.emitted += 1
        return spoken

    def push(self, delta: str) -> list[str]:
        self.buffer += delta
        pieces: list[str] = []
        while True:
            match = None
            for m in _END.finditer(self.buffer):
                before = self.buffer[: m.start()].rstrip().lower()
                if not before.endswith(_ABBREVIATIONS) and not re.search(r"\d\.$", before):
                    match = m
                    break
            if match is None and self.emitted == 0 and self.first_clause_words:
                for clause in _CLAUSE.finditer(self.buffer):
                    if len(self.buffer[: clause.start()].split()) >= self.first_clause_words:
                        match = clause
                        break
            if match is None:
                return pieces
            piece = self._cut(match.end())
            if piece:
                pieces.append(piece)

    def flush(self) -> list[str]:
        piece = self._cut(len(self.buffer))
        return [piece] if piece else []
