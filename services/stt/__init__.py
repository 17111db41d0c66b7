"""Speech-to-text service."""
