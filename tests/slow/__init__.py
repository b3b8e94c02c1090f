"""Seeded learning runs and soaks that take minutes (`make test-slow`)."""
