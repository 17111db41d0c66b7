"""The web voice client in a real headless Chromium: typed and spoken turns, the spoken one through
the browser's microphone path (Chromium plays a WAV file as a fake microphone)."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.speech import speech_wav, words

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Fail, never skip: a skipped browser test is a hole that stays open unnoticed (make test installs
    Chromium or stops). Session-scoped and named first, so it fails before the stack starts."""
    if CHROMIUM is None:
        pytest.fail(
            "Chromium is not installed: run `make chromium` (make test does), or apt-get install chromium"
        )
    return CHROMIUM


@pytest.fixture()
def browser_page(chromium, stack, tmp_path):
    from playwright.sync_api import sync_playwright

    question = speech_wav(
        "What is the capital of Norway?", tmp_path / "mic.wav", sample_rate=48000, tail_s=2.0
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=[*FLAGS, f"--use-file-for-fake-audio-capture={question}%noloop"],
        )
        page = browser.new_page()
        # As `make run` prints it: the token in the link, kept by the page, then gone from the address bar.
        page.goto(stack.base + "/?token=" + os.environ["ECHO_API_KEY"])
        # A selector, not wait_for_function: the page's CSP forbids evaluating strings as script.
        page.wait_for_selector("#status >> text=/^Connected/", timeout=30000)
        assert "token=" not in page.url  # not left in the address bar (or in history, or a Referer)
        yield page
        browser.close()


def test_typed_message_gets_a_reply(browser_page, tmp_path):
    page = browser_page
    page.fill("#text", "Say hello to me.")
    page.press("#text", "Enter")
    page.wait_for_selector(".timings", timeout=120000)
    reply = page.inner_text(".echo")
    assert reply.strip()
    assert "voice_to_voice" in page.inner_text(".timings")
    page.screenshot(path=str(tmp_path / "typed.png"))


def test_spoken_question_through_the_microphone(browser_page):
    page = browser_page
    page.click("#mic")
    page.wait_for_selector(".echo", timeout=120000)
    page.wait_for_selector(".timings", timeout=120000)
    heard = page.inner_text(".you")
    assert {"capital", "norway"} <= words(heard), heard
    assert page.inner_text(".echo").strip()
