"""Note summaries: the `Summarizer` interface and its implementations."""
