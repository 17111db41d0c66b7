"""Language-model service: streamed chat replies, summaries, and the list of models it serves."""
