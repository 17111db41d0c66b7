"""Word error rate of a transcript against the text that was spoken.

Both sides are normalised the same way before counting: lower case, punctuation dropped (an apostrophe
inside a word stays: "what's"), hyphens split words, and numerals under 100 written as words, so
Whisper's "2 plus 2" matches the spoken "two plus two". WER = (substitutions + deletions + insertions)
/ reference words, from the word-level edit distance.
"""

from __future__ import annotations

import re

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen \
sixteen seventeen eighteen nineteen".split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def _number_words(n: int) -> list[str]:
    if n < 20:
        return [_ONES[n]]
    tens, ones = divmod(n, 10)
    return [_TENS[tens - 2]] + ([_ONES[ones]] if ones else [])


def normalise(text: str) -> list[str]:
    """The words of ``text`` as WER compares them."""
    words: list[str] = []
    for token in re.sub(r"[-–—/]", " ", text.lower()).split():
        token = re.sub(r"[^\w']", "", token).strip("'")
        if not token:
            continue
        if token.isdigit() and int(token) < 100:
            words.extend(_number_words(int(token)))
        else:
            words.append(token)
    return words


def word_errors(reference: list[str], hypothesis: list[str]) -> int:
    """Levenshtein distance over words: the fewest substitutions, deletions and insertions."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of ``hypothesis`` against ``reference`` (1.0 for an empty transcript)."""
    ref = normalise(reference)
    if not ref:
        raise ValueError("the reference text has no words")
    return word_errors(ref, normalise(hypothesis)) / len(ref)
