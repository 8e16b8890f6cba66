// The detector: one engine, its metadata and buffers, and detect(frame) = preprocess (CUDA kernel) -> TensorRT ->
// postprocess (host), timed per stage with CUDA events. TensorRT is found when a detector opens (dlopen of
// libnvinfer.so.<major of the headers>), so the library loads, and reports, where TensorRT is missing.
#pragma once

#include "avssm/infer.h"
#include "metadata.hpp"

#include <cuda_runtime_api.h>

#include <memory>
#include <string>
#include <vector>

namespace avssm {
namespace infer {

class Detector {
public:
    // Throws Error for a missing or mismatched engine, a missing plugin, no TensorRT or no GPU.
    explicit Detector(std::string const& enginePath);
    Detector(Detector&&) noexcept;
    ~Detector();

    // Throws Error for a bad frame (AVSSM_ERROR_ARGUMENT), one outside the profile (AVSSM_ERROR_SHAPE) or a
    // failure of CUDA or TensorRT. stream null: the detector's own.
    std::vector<avssm_detection> detect(avssm_frame const& frame, avssm_postprocess_params const& params,
                                        cudaStream_t stream);
    avssm_timing timing() const;
    Metadata const& metadata() const;
    avssm_memory_report memory() const;
    avssm_model_info info() const;

private:
    struct State;
    std::unique_ptr<State> mState;
};

}  // namespace infer
}  // namespace avssm
