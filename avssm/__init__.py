"""avssm: VMamba and Vim perception models for the edge (PyTorch models, scan kernels, export, runtime).

Importing ``avssm`` does not import PyTorch: ``avssm.runtime`` and ``avssm.calib`` run without it.
"""
__version__ = "0.1.0"
