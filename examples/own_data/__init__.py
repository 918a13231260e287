"""The README's "Your own data" example: a stand-in for a user's files."""
