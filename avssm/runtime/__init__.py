"""Runtime: frame sources, inference backends and latency reports. Imports without PyTorch."""
