"""Conversation memory service: turns, sessions and audio."""
