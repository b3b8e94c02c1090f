"""Tests without Ray: plain classes and pure functions, each in seconds."""
