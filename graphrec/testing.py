"""Helpers for tests: the devices to run on."""
import torch

#: 'cpu' always, plus 'cuda' where a GPU is present, so that parametrised
#: tests get CUDA cases automatically on a GPU machine.
DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
