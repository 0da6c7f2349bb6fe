"""graphrec.eval."""
