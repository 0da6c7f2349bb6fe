"""graphrec.models."""
