"""The events calendar (built in the events issue)."""
