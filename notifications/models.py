"""Inbox rows and preferences (built in the notifications issue)."""
