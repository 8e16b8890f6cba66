// Preprocessing of a camera frame into the engine's input, the rules of avssm's Python runtime
// (avssm/runtime/preprocess.py): each 8-bit level of each channel normalized once into a table (the model's
// scale, mean and std from its metadata, in fp32, as numpy computes them), then every pixel looked up, in the
// model's colour order, into planar NCHW fp32 or fp16. preprocess.cuh is the CUDA kernel doing the lookups.
#pragma once

#include "avssm/infer.h"

#include <cstdint>
#include <vector>

namespace avssm {
namespace infer {

struct Normalization {
    bool rgb{true};  // the model takes RGB (else BGR)
    float scale{1.f / 255.f};
    float mean[3]{0.485f, 0.456f, 0.406f};
    float std[3]{0.229f, 0.224f, 0.225f};
};

// 3 x 256 normalized levels, channel-major (table[c * 256 + level]), as fp32.
std::vector<float> normalizationTable(Normalization const& n);
// The same rounded to fp16 (round to nearest even, as numpy's astype(float16)), as raw bits.
std::vector<uint16_t> toHalf(std::vector<float> const& values);
uint16_t halfBits(float value);

// Which byte of a pixel each output channel reads, and how many bytes a pixel has, for a frame format and the
// model's colour order.
struct PixelLayout {
    int32_t bytesPerPixel;  // of the (Y) plane
    int32_t source[3];      // for NV12: of the B, G, R the kernel converts to
    bool nv12;
};
PixelLayout pixelLayout(avssm_pixel_format format, bool modelRgb);
float halfToFloat(uint16_t bits);

// What the kernel (preprocess.cuh) is given; it runs on a grid of (ceil(outWidth / kPreprocessThreads), outHeight)
// blocks of kPreprocessThreads threads.
constexpr int kPreprocessThreads = 128;

struct PreprocessArgs {
    const uint8_t* frame;
    int64_t stride;           // bytes per frame row
    int32_t width, height;    // the frame's
    int32_t bytesPerPixel;    // 3 or 1
    int32_t source[3];        // the byte of a pixel each output channel reads
    int32_t nv12;             // the frame is NV12: Y plane, then the UV plane (height / 2 rows of stride)
    int32_t outWidth, outHeight;
    const void* table;        // 3 x 256 of the output type, channel-major
    void* input;              // (3, outHeight, outWidth) of the output type
};

}  // namespace infer
}  // namespace avssm
