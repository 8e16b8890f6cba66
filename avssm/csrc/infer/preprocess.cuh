// The preprocessing kernel (see preprocess.hpp): one thread per pixel of the engine's input, reading the frame
// once (any stride, BGR/RGB/GRAY) and writing its three planes (fp32 or fp16 bits) through the normalization
// table; input pixels beyond the frame (padding to the model's multiple, bottom and right) are 0, as the model's
// own padding. No intermediate buffer. tests/test_infer.py runs it on the CPU (tests/native/cuda_on_cpu.h).
#pragma once

#include "preprocess.hpp"

#include <cstdint>

namespace avssm {
namespace infer {

// BT.601 video range to 8-bit B, G, R in 20-bit fixed point, rounded and clamped: what OpenCV's
// COLOR_YUV2BGR_NV12 computes (tests/test_infer.py compares the two).
__host__ __device__ inline void nv12ToBgr(int32_t luma, int32_t u, int32_t v, uint8_t* bgr) {
    int32_t const half = 1 << 19;
    int32_t const y = (luma > 16 ? luma - 16 : 0) * 1220542;
    u -= 128;
    v -= 128;
    int32_t const b = (y + half + 2116026 * u) >> 20;
    int32_t const g = (y + half - 852492 * v - 409993 * u) >> 20;
    int32_t const r = (y + half + 1673527 * v) >> 20;
    bgr[0] = static_cast<uint8_t>(b < 0 ? 0 : b > 255 ? 255 : b);
    bgr[1] = static_cast<uint8_t>(g < 0 ? 0 : g > 255 ? 255 : g);
    bgr[2] = static_cast<uint8_t>(r < 0 ? 0 : r > 255 ? 255 : r);
}

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
    uint8_t bgr[3];
    uint8_t const* pixel = args.frame + y * args.stride + static_cast<int64_t>(x) * args.bytesPerPixel;
    if (args.nv12) {
        uint8_t const* uv = args.frame + (args.height + y / 2) * args.stride + (x & ~1);
        nv12ToBgr(pixel[0], uv[0], uv[1], bgr);
        pixel = bgr;
    }
    out[0] = table[pixel[args.source[0]]];
    out[plane] = table[256 + pixel[args.source[1]]];
    out[2 * plane] = table[512 + pixel[args.source[2]]];
}

}  // namespace infer
}  // namespace avssm
