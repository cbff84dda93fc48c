"""A job queue on the database: enqueue in the caller's transaction, claim with a lease,
fence every write by the lease token, retry with backoff. Knows nothing of notes."""
