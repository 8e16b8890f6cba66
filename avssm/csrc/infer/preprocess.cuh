// The preprocessing kernel (see preprocess.hpp): one thread per pixel of the engine's input, reading the frame
// once (any stride, BGR/RGB/GRAY) and writing its three planes (fp32 or fp16 bits) through the normalization
// table; input pixels beyond the frame (padding to the model's multiple, bottom and right) are 0, as the model's
// own padding. No intermediate buffer. tests/test_infer.py runs it on the CPU (tests/native/cuda_on_cpu.h).
#pragma once

#include "preprocess.hpp"

#include <cstdint>

namespace avssm {
namespace infer {

// T: float (fp32 input) or uint16_t (the bits of an fp16 input).
template <typename T>
__global__ void preprocess_kernel(PreprocessArgs args) {
    int32_t const x = static_cast<int32_t>(blockIdx.x) * kPreprocessThreads + static_cast<int32_t>(threadIdx.x);
    int32_t const y = static_cast<int32_t>(blockIdx.y);
    if (x >= args.outWidth) return;
    T const* table = static_cast<T const*>(args.table);
    T* out = static_cast<T*>(args.input) + static_cast<int64_t>(y) * args.outWidth + x;
    int64_t const plane = static_cast<int64_t>(args.outWidth) * args.outHeight;
    if (x >= args.width || y >= args.height) {
        out[0] = out[plane] = out[2 * plane] = T(0);
        return;
    }
    uint8_t const* pixel = args.frame + y * args.stride + static_cast<int64_t>(x) * args.bytesPerPixel;
    out[0] = table[pixel[args.source[0]]];
    out[plane] = table[256 + pixel[args.source[1]]];
    out[2 * plane] = table[512 + pixel[args.source[2]]];
}

}  // namespace infer
}  // namespace avssm
