// libavssm_trt_autoregister.so: registers avssm's SelectiveScan creator as it is loaded, for programs that load a
// plugin library with dlopen alone and expect it to register itself: trtexec --staticPlugins, DeepStream's nvinfer
// (custom-lib-path), Triton's TensorRT backend, ONNX Runtime's TensorRT provider (trt_extra_plugin_lib_paths).
//
// It holds no plugin: the creator is libavssm_trt_plugin.so's (found beside this file), so a process that loads
// both libraries has one creator and registers it once. It links no TensorRT library: it registers with the
// TensorRT already loaded by the program (avssmRegisterPlugins), and says so in one line when there is none.
#include "selectiveScanPlugin.h"

namespace {

struct RegisterOnLoad {
    RegisterOnLoad() { avssmRegisterPlugins(); }
};

RegisterOnLoad const gRegisterOnLoad;

}  // namespace
