"""Note summaries: the `Summarizer` interface and its implementations, the summary job, and
what summaries cost (per note, and per organization and UTC day, which its admins read)."""
