// Device helpers shared by the selective-scan kernels (selective_scan_kernel.cu, token_scan_kernel.cuh):
// dtype conversion, the hardware exponential, softplus, the scan's combine, the kernels' arguments and the
// blocked loads. Under a host compiler (no __CUDA_ARCH__) the two hardware approximations fall back to the
// C library, so tests can run a kernel thread by thread on the CPU (tests/native/cuda_on_cpu.h).
#pragma once

#include "avssm/selective_scan.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace avssm {
namespace {

constexpr float kLog2e = 1.4426950408889634f;

template <typename T> __device__ __forceinline__ float to_float(T v);
template <> __device__ __forceinline__ float to_float<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_float<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

__device__ __forceinline__ float fast_exp2(float x) {
#ifdef __CUDA_ARCH__
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));  // the exponential unit; underflow flushes to 0
    return y;
#else
    return std::exp2(x);
#endif
}

__device__ __forceinline__ float fast_log2(float x) {
#ifdef __CUDA_ARCH__
    float y;
    asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
#else
    return std::log2(x);
#endif
}

// mamba_ssm's softplus, log(1 + e^x), as max(x, 0) + log1p(e^-|x|) in about 12 instructions (log1pf
// takes about 35, which made it a quarter of the N = 16 kernel's instructions). With e = e^-|x| in (0, 1]:
// below 1/16 the series to e^4 (relative error < e^4 / 5 = 3e-6), else the hardware log2 of 1 + e
// (absolute error about 1e-7 on a result >= 0.06). Above 20 it returns x + log1p(e^-20), which is x in fp32.
__device__ __forceinline__ float softplus(float x) {
    const float e = fast_exp2(-fabsf(x) * kLog2e);
    const float series = e * (1.f - e * (0.5f - e * (1.f / 3.f - e * 0.25f)));
    const float tail = e < 0.0625f ? series : fast_log2(1.f + e) * 0.6931471805599453f;
    return fmaxf(x, 0.f) + tail;
}

// (a, b) applies h -> a * h + b. combine(x, y) applies x first, then y.
struct ScanOp {
    __device__ __forceinline__ float2 operator()(const float2 &x, const float2 &y) const {
        return make_float2(x.x * y.x, y.x * x.y + y.y);
    }
};

struct KernelArgs {
    avssm_scan_params p;
    int segments;
    int64_t segment_length;  // whole chunks (block-scan paths) or tiles (channel path)
    float2 *aggregates;      // (batch * dim, segments, dstate) when segments > 1
};

// State n of `row` entering `segment`: the earlier segments' (total decay, end state) pairs folded in order.
__device__ __forceinline__ float carried_state(const KernelArgs &args, int64_t row, int segment, int nstate, int n) {
    float h = 0.f;
    for (int s = 0; s < segment; ++s) {
        const float2 agg = args.aggregates[(row * args.segments + s) * nstate + n];
        h = agg.x * h + agg.y;
    }
    return h;
}

// The kV 16-byte vectors from `mine` (16-byte aligned) on, each one load.
template <typename input_t, int kV>
__device__ __forceinline__ void load_vectors(const input_t *mine, uint4 (&vectors)[kV]) {
    #pragma unroll
    for (int v = 0; v < kV; ++v) vectors[v] = reinterpret_cast<const uint4 *>(mine)[v];
}

// The kN consecutive elements thread threadIdx.x owns in a blocked arrangement (thread i: elements
// [i * kN, i * kN + kN) of the chunk), as floats. kWhole: a whole chunk at a 16-byte aligned address, read
// with 16-byte loads (each warp then reads one contiguous span); else element by element, zero past `valid`.
template <bool kWhole, typename input_t, int kN>
__device__ __forceinline__ void load_blocked(const input_t *chunk, int valid, float (&out)[kN]) {
    const input_t *mine = chunk + threadIdx.x * kN;
    input_t raw[kN];
    if (kWhole) {
        static_assert(kN * sizeof(input_t) % 16 == 0, "whole 16-byte vectors per thread");
        uint4 vectors[kN * sizeof(input_t) / 16];
        load_vectors(mine, vectors);
        memcpy(raw, vectors, sizeof(raw));
    } else {
        #pragma unroll
        for (int i = 0; i < kN; ++i)
            raw[i] = threadIdx.x * kN + i < static_cast<unsigned>(valid) ? mine[i] : from_float<input_t>(0.f);
    }
    #pragma unroll
    for (int i = 0; i < kN; ++i) out[i] = to_float(raw[i]);
}

__device__ __forceinline__ float bits_to_float(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof(f));
    return f;
}

// kN elements as loaded, in 32-bit words (two per word in fp16 and bf16), each converted to float where it is
// used: a conversion reads its half of a word in one instruction, so nothing is unpacked, or waits for the
// load, ahead of use.
template <typename input_t, int kN>
struct PackedElements {
    static_assert(kN * sizeof(input_t) % 4 == 0, "whole 32-bit words");
    uint32_t words[kN * sizeof(input_t) / 4];

    __device__ __forceinline__ float operator[](int i) const {
        if (sizeof(input_t) == 4) return bits_to_float(words[i]);
        const uint32_t word = words[i / 2];
        if (std::is_same<input_t, __nv_bfloat16>::value)  // bf16 is the top half of an fp32
            return bits_to_float(i % 2 ? word & 0xffff0000u : word << 16);
        __half2 pair;
        memcpy(static_cast<void *>(&pair), &word, sizeof(pair));  // __half2 has no trivial assignment
        return i % 2 ? __high2float(pair) : __low2float(pair);
    }
};

// The kN elements from `mine` on, kept packed. kWhole: all of them, 16-byte aligned; else the first `count`
// (any int: at most 0 reads none) and zeros after them.
template <bool kWhole, typename input_t, int kN>
__device__ __forceinline__ void load_packed(const input_t *mine, int count, PackedElements<input_t, kN> &out) {
    if (kWhole) {
        static_assert(kN * sizeof(input_t) % 16 == 0, "whole 16-byte vectors per thread");
        uint4 vectors[kN * sizeof(input_t) / 16];
        load_vectors(mine, vectors);
        memcpy(out.words, vectors, sizeof(out.words));
    } else {
        input_t raw[kN];
        #pragma unroll
        for (int i = 0; i < kN; ++i) raw[i] = i < count ? mine[i] : from_float<input_t>(0.f);
        memcpy(out.words, raw, sizeof(out.words));
    }
}

template <bool kWhole, typename input_t, int kN>
__device__ __forceinline__ void store_blocked(input_t *chunk, int valid, const float (&in)[kN]) {
    input_t *mine = chunk + threadIdx.x * kN;
    input_t raw[kN];
    #pragma unroll
    for (int i = 0; i < kN; ++i) raw[i] = from_float<input_t>(in[i]);
    if (kWhole) {
        uint4 vectors[kN * sizeof(input_t) / 16];
        memcpy(vectors, raw, sizeof(raw));
        #pragma unroll
        for (int v = 0; v < kN * static_cast<int>(sizeof(input_t)) / 16; ++v)
            reinterpret_cast<uint4 *>(mine)[v] = vectors[v];
    } else {
        #pragma unroll
        for (int i = 0; i < kN; ++i)
            if (threadIdx.x * kN + i < static_cast<unsigned>(valid)) mine[i] = raw[i];
    }
}

// Whether a row's chunks of `chunk` elements are 16-byte aligned wherever they start (whole chunks can then
// use 16-byte loads): every pointer aligned and each row's length a multiple of 16 bytes.
template <typename input_t>
__device__ __forceinline__ bool rows_aligned(const avssm_scan_params &p) {
    return ((reinterpret_cast<uintptr_t>(p.u) | reinterpret_cast<uintptr_t>(p.delta) |
             reinterpret_cast<uintptr_t>(p.z) | reinterpret_cast<uintptr_t>(p.B) | reinterpret_cast<uintptr_t>(p.C) |
             reinterpret_cast<uintptr_t>(p.y)) % 16 == 0) &&
           (p.length * static_cast<int64_t>(sizeof(input_t))) % 16 == 0;
}

}  // namespace
}  // namespace avssm
