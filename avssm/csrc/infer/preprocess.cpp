#include "preprocess.hpp"

#include <cmath>
#include <cstring>

namespace avssm {
namespace infer {

std::vector<float> normalizationTable(Normalization const& n) {
    std::vector<float> table(3 * 256);
    for (int c = 0; c < 3; ++c) {
        for (int level = 0; level < 256; ++level) {
            // Three fp32 operations, each rounded, as numpy does them: no fused multiply-add.
            volatile float const scaled = static_cast<float>(level) * n.scale;
            volatile float const centred = scaled - n.mean[c];
            table[c * 256 + level] = centred / n.std[c];
        }
    }
    return table;
}

uint16_t halfBits(float value) {
    uint32_t x;
    std::memcpy(&x, &value, 4);
    uint32_t const sign = (x >> 16) & 0x8000u;
    uint32_t const magnitude = x & 0x7fffffffu;
    if (magnitude >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (magnitude > 0x7f800000u ? 0x200u : 0));
    if (magnitude >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds beyond 65504: infinity
    if (magnitude < 0x33000001u) return static_cast<uint16_t>(sign);             // below half the smallest subnormal
    int32_t const exponent = static_cast<int32_t>(magnitude >> 23) - 127;
    uint32_t mantissa = (magnitude & 0x7fffffu) | 0x800000u;
    // Normal halves keep 10 of the 23 fraction bits; subnormals fewer, by how far the exponent is below -14.
    int32_t const shift = exponent < -14 ? 13 + (-14 - exponent) : 13;
    uint32_t const kept = mantissa >> shift;
    uint32_t const rest = mantissa & ((1u << shift) - 1);
    uint32_t const halfway = 1u << (shift - 1);
    uint32_t bits = exponent < -14 ? kept : ((static_cast<uint32_t>(exponent + 15) << 10) | (kept & 0x3ffu));
    if (rest > halfway || (rest == halfway && (kept & 1u))) ++bits;  // a carry into the exponent is right too
    return static_cast<uint16_t>(sign | bits);
}

float halfToFloat(uint16_t h) {
    uint32_t const sign = static_cast<uint32_t>(h & 0x8000u) << 16, exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
    float value;
    if (exponent == 0) {
        value = std::ldexp(static_cast<float>(mantissa), -24);
        return sign ? -value : value;
    }
    uint32_t const bits = sign | (exponent == 31 ? 0x7f800000u | (mantissa << 13) : ((exponent + 112) << 23) | (mantissa << 13));
    std::memcpy(&value, &bits, 4);
    return value;
}

std::vector<uint16_t> toHalf(std::vector<float> const& values) {
    std::vector<uint16_t> bits(values.size());
    for (size_t i = 0; i < values.size(); ++i) bits[i] = halfBits(values[i]);
    return bits;
}

PixelLayout pixelLayout(avssm_pixel_format format, bool modelRgb) {
    switch (format) {
        case AVSSM_PIXEL_GRAY8: return {1, {0, 0, 0}, false};
        case AVSSM_PIXEL_RGB8: return modelRgb ? PixelLayout{3, {0, 1, 2}, false} : PixelLayout{3, {2, 1, 0}, false};
        case AVSSM_PIXEL_NV12: return modelRgb ? PixelLayout{1, {2, 1, 0}, true} : PixelLayout{1, {0, 1, 2}, true};
        case AVSSM_PIXEL_BGR8:
        default: return modelRgb ? PixelLayout{3, {2, 1, 0}, false} : PixelLayout{3, {0, 1, 2}, false};
    }
}

}  // namespace infer
}  // namespace avssm
