"""The Server-Sent Event streams of note events (`GET /notes/events`, `/notes/{id}/events`):
one feed per process, each stream scoped by the notes' tenancy rule."""
