"""store: the on-disk format of a run (records, provenance and identity, whole-file writes).

Analysis: imports no torch."""
