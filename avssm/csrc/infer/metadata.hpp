// What avssm_infer needs from an engine's sidecar (`<engine>.json`, written by `avssm build`: the avssm metadata of
// the exported file, the TensorRT version and GPU it was built with, the input shapes).
#pragma once

#include "preprocess.hpp"

#include <string>
#include <vector>

namespace avssm {
namespace infer {

struct Metadata {
    std::string model, task, scanOp, precision;
    std::vector<std::string> classNames;
    Normalization normalization;
    bool halfInput{false};      // the input tensor is fp16
    std::string tensorrt, gpu;  // as built
    std::string pluginLibrary;  // the plugin library's file name (plugin-form engines), "" when none is needed
    bool needsPlugin() const { return scanOp == "plugin"; }
};

// Reads and checks `path` (the sidecar of `engine`); throws Error(AVSSM_ERROR_FILE, one line naming the file).
Metadata readSidecar(std::string const& path, std::string const& engine);

}  // namespace infer
}  // namespace avssm
