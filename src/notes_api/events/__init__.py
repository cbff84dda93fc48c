"""The note events table (written by notes/outbox.py), the lookups of other packages, and
the after-commit signal that new events were recorded."""
