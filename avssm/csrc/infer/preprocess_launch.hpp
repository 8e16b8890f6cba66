#pragma once

#include <cuda_runtime_api.h>

namespace avssm {
namespace infer {

struct PreprocessArgs;
cudaError_t launchPreprocess(PreprocessArgs const& args, bool half, cudaStream_t stream);

}  // namespace infer
}  // namespace avssm
