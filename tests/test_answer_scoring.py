"""bench/answers.py's scoring: an accepted answer counts only as whole words, in any case or spelling of
a number that the question accepts; the first-sentence score sees only what is said first."""

from __future__ import annotations

import pytest

from bench.answers import QUESTIONS, first_sentence, is_correct

ACCEPTED = dict(QUESTIONS)


@pytest.mark.parametrize(
    ("question", "reply", "correct"),
    [
        ("What is the capital of Australia?", "The capital of Australia is Canberra.", True),
        ("What is the capital of Australia?", "The capital of Australia is Sydney.", False),
        ("Who wrote Romeo and Juliet?", "It was written by J.K. Rowling.", False),
        ("Who wrote Romeo and Juliet?", "William SHAKESPEARE wrote it.", True),
        ("How many days are there in a leap year?", "A leap year has 366 days.", True),
        ("How many days are there in a leap year?", "Three hundred and sixty six days.", True),
        ("How many days are there in a leap year?", "It has 365 days.", False),
        ("How many days are there in a leap year?", "It has 3660 days.", False),
        ("What is the chemical symbol for gold?", "Its symbol is Au.", True),
        # "au" inside another word is not the answer.
        ("What is the chemical symbol for gold?", "Gold is found in Australia.", False),
        ("How many continents are there?", "There are seventeen.", False),
        ("How many continents are there?", "There are 7 continents.", True),
        ("What is the boiling point of water in Celsius?", "Water boils at 100°C.", True),
    ],
)
def test_a_reply_is_correct_when_it_holds_an_accepted_answer_as_whole_words(
    question: str, reply: str, correct: bool
) -> None:
    assert is_correct(reply, ACCEPTED[question]) is correct


def test_every_question_accepts_an_answer_and_is_asked_once() -> None:
    assert len(QUESTIONS) == 20
    assert len(ACCEPTED) == len(QUESTIONS)
    assert all(answers for answers in ACCEPTED.values())


def test_the_first_sentence_leaves_out_later_guesses() -> None:
    reply = "The capital is Sydney. Some say Canberra."
    assert is_correct(reply, ACCEPTED["What is the capital of Australia?"])
    assert not is_correct(first_sentence(reply), ACCEPTED["What is the capital of Australia?"])
    assert first_sentence("Water boils at 100.0 degrees. At sea level.") == "Water boils at 100.0 degrees."
    assert first_sentence("Egypt") == "Egypt"
