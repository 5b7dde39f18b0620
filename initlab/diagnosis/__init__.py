"""diagnosis: a run's tables -> a verdict (evidence and rules). Imports no torch."""
