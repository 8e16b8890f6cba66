# find_package(avssm_infer) -> the imported target avssm::avssm_infer (header avssm/infer.h, libavssm_infer.so, which
# finds libavssm_trt_plugin.so beside itself and TensorRT when a detector opens).
include("${CMAKE_CURRENT_LIST_DIR}/avssm_inferTargets.cmake")

# A program or ROS 2 component installed from a project that found this package finds libavssm_infer.so where it
# is installed, with a clean environment: targets created after find_package get this folder in their install
# RUNPATH (CMake gives their build-tree binaries the imported library's folder already).
get_filename_component(_avssm_infer_lib "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)
list(APPEND CMAKE_INSTALL_RPATH "${_avssm_infer_lib}")
unset(_avssm_infer_lib)
