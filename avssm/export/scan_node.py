"""Identity of the exported scan node, ``trt.plugins::SelectiveScan`` (contract: plugins/selective_scan/README.md).

Torch-free, so the portable lowering and `avssm calib` run on machines without PyTorch.
"""
DOMAIN = "trt.plugins"
OP_TYPE = "SelectiveScan"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "avssm"
