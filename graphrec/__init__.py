"""graphrec: graph-based multi-behavior recommendation on PyTorch Geometric."""
__version__ = '0.1.0'

__all__ = ['__version__']
