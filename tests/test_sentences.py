"""The incremental sentence splitter that feeds TTS while the LLM is still generating."""

from __future__ import annotations

from gateway.sentences import SentenceSplitter, speakable


def feed(splitter: SentenceSplitter, text: str, step: int = 3) -> list[str]:
    out: list[str] = []
    for i in range(0, len(text), step):
        out += splitter.push(text[i : i + step])
    return out + splitter.flush()


def test_sentences_come_out_as_soon_as_they_end() -> None:
    splitter = SentenceSplitter(first_clause_words=0)
    assert splitter.push("Hello there. How are") == ["Hello there."]
    assert splitter.push(" you today? I am") == ["How are you today?"]
    assert splitter.flush() == ["I am"]


def test_abbreviations_and_decimals_do_not_split() -> None:
    text = "Dr. Smith paid 3.5 dollars, e.g. for tea. Then he left."
    assert feed(SentenceSplitter(first_clause_words=0), text) == [
        "Dr. Smith paid 3.5 dollars, e.g. for tea.",
        "Then he left.",
    ]


def test_first_piece_may_end_at_a_clause_for_faster_first_audio() -> None:
    text = "Well, the weather in Paris today is lovely, with sun all afternoon. Enjoy it, friend."
    pieces = feed(SentenceSplitter(first_clause_words=6), text)
    assert pieces == [
        "Well, the weather in Paris today is lovely,",
        "with sun all afternoon.",
        "Enjoy it, friend.",
    ]


def test_by_default_the_first_piece_ends_at_the_first_clause_of_four_words() -> None:
    assert feed(SentenceSplitter(), "Sure, I can help with that: the answer is four. Anything else?") == [
        "Sure, I can help with that:",
        "the answer is four.",
        "Anything else?",
    ]
    assert (
        feed(SentenceSplitter(), "The tower is tall - about 330 metres - and old.")[0]
        == "The tower is tall -"
    )
    assert feed(SentenceSplitter(), "Paris is lovely – sunny all day.")[0] == "Paris is lovely –"


def test_markdown_is_not_read_aloud_and_empty_pieces_are_dropped() -> None:
    assert speakable("**Bold** and `code` # heading") == "Bold and code heading"
    assert feed(SentenceSplitter(), "*** \n\n Fine.\n- item one\n") == ["Fine.", "- item one"]
