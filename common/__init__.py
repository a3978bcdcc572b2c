"""The neutral ground floor: the shared errors and settings. It imports nothing of the project."""
