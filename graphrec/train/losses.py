"""Training losses: re-exported from :mod:`graphrec.losses`, the one module
where every loss function lives (a leaf, so that :mod:`graphrec.nn` can use
them too).
"""
from graphrec.losses import *  # noqa: F401,F403
from graphrec.losses import __all__  # noqa: F401
