"""Rate limits and quotas held in the database, so they hold across every API process."""
