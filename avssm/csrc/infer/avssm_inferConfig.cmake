# find_package(avssm_infer) -> the imported target avssm::avssm_infer (header avssm/infer.h, libavssm_infer.so, which
# finds libavssm_trt_plugin.so beside itself and TensorRT when a detector opens).
include("${CMAKE_CURRENT_LIST_DIR}/avssm_inferTargets.cmake")
