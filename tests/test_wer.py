"""bench/wer.py: the word error rate bench/latency.py reports."""

from __future__ import annotations

import pytest

from bench.wer import normalise, wer, word_errors


def test_normalise_drops_case_and_punctuation_and_spells_small_numbers():
    assert normalise("What is 2 plus 2?") == ["what", "is", "two", "plus", "two"]
    assert normalise("It's twenty-one, Mr. Smith!") == ["it's", "twenty", "one", "mr", "smith"]
    assert normalise("42 and 1000") == ["forty", "two", "and", "1000"]
    assert normalise(" ... ") == []


def test_word_errors_counts_substitutions_deletions_and_insertions():
    ref = "what is the capital of france".split()
    assert word_errors(ref, ref) == 0
    assert word_errors(ref, "what is the capitol of france".split()) == 1  # substitution
    assert word_errors(ref, "what the capital of france".split()) == 1  # deletion
    assert word_errors(ref, "so what is the capital of france".split()) == 1  # insertion
    assert word_errors(ref, []) == len(ref)
    assert word_errors([], ["noise"]) == 1


def test_wer_is_errors_over_reference_words():
    assert wer("What is the capital of France?", "what is the capital of France") == 0.0
    assert wer("Why is the sky blue?", "Why is the sky glue?") == pytest.approx(1 / 5)
    assert wer("What is two plus two?", "What is 2 plus 2?") == 0.0
    assert wer("Tell me a fun fact.", "") == 1.0
    # Insertions can take it past 1.
    assert wer("Hi.", "hi hi hi") == 2.0
    with pytest.raises(ValueError, match="no words"):
        wer("?", "anything")
