"""graphrec.nn."""
