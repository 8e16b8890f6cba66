// Launches the preprocessing kernel (preprocess.cuh) for the detector.
#include "preprocess.cuh"
#include "preprocess_launch.hpp"

namespace avssm {
namespace infer {

cudaError_t launchPreprocess(PreprocessArgs const& args, bool half, cudaStream_t stream) {
    dim3 const grid(static_cast<unsigned>((args.outWidth + kPreprocessThreads - 1) / kPreprocessThreads),
                    static_cast<unsigned>(args.outHeight));
    if (half) {
        preprocess_kernel<uint16_t><<<grid, kPreprocessThreads, 0, stream>>>(args);
    } else {
        preprocess_kernel<float><<<grid, kPreprocessThreads, 0, stream>>>(args);
    }
    return cudaGetLastError();
}

}  // namespace infer
}  // namespace avssm
