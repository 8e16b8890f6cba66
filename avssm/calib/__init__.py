"""Calibration and precision (FP16 / INT8 Q/DQ) for exported models. Imports without PyTorch."""
