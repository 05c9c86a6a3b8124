"""Test helpers for dd: a local OpenAI-compatible server with injectable faults."""
