"""graphrec.datasets."""
