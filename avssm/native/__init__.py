"""avssm's native libraries, torch-free (ctypes only), so `avssm doctor` and the runtime work on a machine that only
runs engines. The sources are in avssm/csrc (shipped in the package); the PyTorch ops over these libraries are
avssm.ops.cuda_kernel and avssm.ops.cpu_kernel.

* :mod:`avssm.native.settings`: every environment variable avssm reads;
* :mod:`avssm.native.abi`: the kernel library's C API as ctypes (params struct, plan, workspace size);
* :mod:`avssm.native.libraries`: finding and loading the built libraries;
* :mod:`avssm.native.build`: building them (the C libraries on first use, CMake for CUDA and TensorRT).
"""
from avssm.native.abi import (FUSED_LAYOUTS, SCAN_API_VERSION, SCAN_LAYOUTS, FusedScanParams, ScanParams,
                              load_kernel_library, scan_plan, workspace_size)
from avssm.native.build import SOURCE_DIR, build_c_library, build_plugins, ort_scan_op_library
from avssm.native.libraries import (AUTOREGISTER_LIB, KERNEL_LIB, PLUGIN_LIB, check_plugin_library, find_kernel_library,
                                    find_plugin_library, kernel_candidates, kernel_library, kernel_library_loads,
                                    plugin_candidates)
from avssm.native.settings import cache_dir

__all__ = ["AUTOREGISTER_LIB", "FUSED_LAYOUTS", "FusedScanParams", "KERNEL_LIB", "PLUGIN_LIB", "SCAN_API_VERSION",
           "SCAN_LAYOUTS", "SOURCE_DIR", "ScanParams", "build_c_library", "build_plugins", "cache_dir",
           "check_plugin_library", "find_kernel_library", "find_plugin_library", "kernel_candidates", "kernel_library",
           "kernel_library_loads", "load_kernel_library", "ort_scan_op_library", "plugin_candidates", "scan_plan",
           "workspace_size"]
