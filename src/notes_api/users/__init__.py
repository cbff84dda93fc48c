"""The users, and who is calling: each user's sign-in sessions and access tokens, the caller
check every request runs (`CallerWork`, `AdminWork`), and the admins' user management."""
