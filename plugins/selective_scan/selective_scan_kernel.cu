// avssm selective scan forward: the CUDA kernels behind plugins/include/avssm/selective_scan.h.
//
// Semantics: plugins/selective_scan/README.md (mamba_ssm's selective scan). Two kernels, one contract:
//
// * channel_scan_kernel, the N = 16 path (Vim, VMamba v0): one warp per 32 channels of one
//   (batch, group), or per 16 channels with two lanes per channel holding 8 states each when that
//   fills the GPU better; each lane walks its channel's sequence in order with its states in
//   registers, so there is no scan across threads at all. Tiles of 32 tokens of u, delta and z are
//   read once from global memory (coalesced, lane = token; softplus and the z gate computed there)
//   into shared memory and read back transposed (lane = channel); B and C of a tile are read once per
//   warp and broadcast to its channels; y is written once through the same tile. Per token and state:
//   one exponential, one multiply and two multiply-adds.
// * scan_kernel, every other N (1 to 256; compiled for N = 1 too, where it beats the channel kernel:
//   that shape is memory-bound and this one keeps more loads in flight): one block per (batch,
//   channel); chunks of kThreads * kItems tokens, each thread's 8 consecutive tokens of every input
//   requested at once with 16-byte loads; per state a block-wide inclusive scan over (decay, input)
//   pairs with the running state carried from chunk to chunk on chip.
//
// Both split long sequences into segments across blocks when batch * dim alone cannot fill the GPU:
// a first pass writes each segment's (total decay, end state from zero) per state to the workspace,
// the second starts each segment from the state its predecessors carry in (a fold of at most 64
// pairs). Math and state in fp32; 64-bit offsets; no allocation, no host synchronization,
// deterministic (CUDA-graph capturable).
#include "avssm/selective_scan.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include <cub/block/block_scan.cuh>

namespace avssm {
namespace {

constexpr int kThreads = 128;
constexpr int kItems = 8;  // 16 measured 10-25% slower at N = 1 (H100)
constexpr int kChunk = kThreads * kItems;
constexpr float kLog2e = 1.4426950408889634f;
// Blocks per multiprocessor below which the block scan splits sequences. Measured on an H100 at batch 1,
// N = 1 (dim 384-6144, L 2k-130k): not splitting was fastest or within 7% of it down to dim 384
// (0.4-0.8 blocks per multiprocessor), where its first pass's second read of u, delta and B costs more
// than the idle multiprocessors; splitting to 16 blocks per multiprocessor cost up to 1.4x (dim 768).
constexpr int kSegmentFill = 2;

template <typename T> __device__ __forceinline__ float to_float(T v);
template <> __device__ __forceinline__ float to_float<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_float<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));  // the exponential unit; underflow flushes to 0
    return y;
}

__device__ __forceinline__ float fast_log2(float x) {
    float y;
    asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
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

// Supplies the state entering the chunk and advances it by the chunk's aggregate.
struct RunningPrefix {
    float2 running;
    __device__ __forceinline__ float2 operator()(float2 block_aggregate) {
        float2 old = running;
        running = ScanOp()(running, block_aggregate);
        return old;
    }
};

struct KernelArgs {
    avssm_scan_params p;
    int segments;
    int64_t segment_length;  // whole chunks (block-scan path) or tiles (channel path)
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

// The kItems consecutive elements a thread owns in the blocked arrangement the block scan takes, as
// floats. kWhole: a whole chunk at a 16-byte aligned address, read with 16-byte loads (each warp then
// reads one contiguous span); else element by element, zero past `valid`.
template <bool kWhole, typename input_t>
__device__ __forceinline__ void load_blocked(const input_t *chunk, int valid, float (&out)[kItems]) {
    const input_t *mine = chunk + threadIdx.x * kItems;
    input_t raw[kItems];
    if (kWhole) {
        static_assert(kItems * sizeof(input_t) % 16 == 0, "whole 16-byte vectors per thread");
        uint4 vectors[kItems * sizeof(input_t) / 16];
        #pragma unroll
        for (int v = 0; v < kItems * static_cast<int>(sizeof(input_t)) / 16; ++v)
            vectors[v] = reinterpret_cast<const uint4 *>(mine)[v];
        memcpy(raw, vectors, sizeof(raw));
    } else {
        #pragma unroll
        for (int i = 0; i < kItems; ++i)
            raw[i] = threadIdx.x * kItems + i < valid ? mine[i] : from_float<input_t>(0.f);
    }
    #pragma unroll
    for (int i = 0; i < kItems; ++i) out[i] = to_float(raw[i]);
}

template <bool kWhole, typename input_t>
__device__ __forceinline__ void store_blocked(input_t *chunk, int valid, const float (&in)[kItems]) {
    input_t *mine = chunk + threadIdx.x * kItems;
    input_t raw[kItems];
    #pragma unroll
    for (int i = 0; i < kItems; ++i) raw[i] = from_float<input_t>(in[i]);
    if (kWhole) {
        uint4 vectors[kItems * sizeof(input_t) / 16];
        memcpy(vectors, raw, sizeof(raw));
        #pragma unroll
        for (int v = 0; v < kItems * static_cast<int>(sizeof(input_t)) / 16; ++v)
            reinterpret_cast<uint4 *>(mine)[v] = vectors[v];
    } else {
        #pragma unroll
        for (int i = 0; i < kItems; ++i)
            if (threadIdx.x * kItems + i < valid) mine[i] = raw[i];
    }
}

// One chunk's per-token inputs. B and C (state 0) only when the block scan has one state: with more,
// they are read state by state.
template <bool kWhole, int kNState, bool kAggregateOnly, typename input_t>
__device__ __forceinline__ void load_chunk(const input_t *u, const input_t *delta, const input_t *z, const input_t *B,
                                           const input_t *C, int valid, float (&u_v)[kItems], float (&dt_v)[kItems],
                                           float (&z_v)[kItems], float (&b_v)[kItems], float (&c_v)[kItems]) {
    load_blocked<kWhole>(u, valid, u_v);
    load_blocked<kWhole>(delta, valid, dt_v);
    if (!kAggregateOnly && z) load_blocked<kWhole>(z, valid, z_v);
    if (kNState == 1) {
        load_blocked<kWhole>(B, valid, b_v);
        if (!kAggregateOnly) load_blocked<kWhole>(C, valid, c_v);
    }
}

template <typename input_t, int kNState, bool kAggregateOnly>
__global__ void __launch_bounds__(kThreads) scan_kernel(KernelArgs args) {
    using Scan = cub::BlockScan<float2, kThreads, cub::BLOCK_SCAN_WARP_SCANS>;
    __shared__ typename Scan::TempStorage scan_storage;
    __shared__ float2 running[AVSSM_SCAN_MAX_STATE];

    const avssm_scan_params &p = args.p;
    const int nstate = kNState > 0 ? kNState : static_cast<int>(p.dstate);
    const int64_t row = blockIdx.x;  // batch * dim + channel
    const int segment = blockIdx.y;
    const int64_t b = row / p.dim, d = row % p.dim;
    const int64_t g = d / (p.dim / p.groups);
    const int64_t L = p.length;
    const int64_t begin = static_cast<int64_t>(segment) * args.segment_length;
    const int64_t end = begin + args.segment_length < L ? begin + args.segment_length : L;
    if (begin >= end) return;

    const input_t *u = static_cast<const input_t *>(p.u) + row * L;
    const input_t *delta = static_cast<const input_t *>(p.delta) + row * L;
    const input_t *z = p.z ? static_cast<const input_t *>(p.z) + row * L : nullptr;
    const input_t *Bg = static_cast<const input_t *>(p.B) + (b * p.groups + g) * p.dstate * L;
    const input_t *Cg = static_cast<const input_t *>(p.C) + (b * p.groups + g) * p.dstate * L;
    input_t *y = static_cast<input_t *>(p.y) + row * L;
    const float bias = p.delta_bias ? p.delta_bias[d] : 0.f;
    const float skip = p.D ? p.D[d] : 0.f;
    // Chunks start at multiples of kChunk, so whole chunks are 16-byte aligned when rows are.
    const bool aligned = ((reinterpret_cast<uintptr_t>(p.u) | reinterpret_cast<uintptr_t>(p.delta) |
                           reinterpret_cast<uintptr_t>(p.z) | reinterpret_cast<uintptr_t>(p.B) |
                           reinterpret_cast<uintptr_t>(p.C) | reinterpret_cast<uintptr_t>(p.y)) % 16 == 0) &&
                         (L * static_cast<int64_t>(sizeof(input_t))) % 16 == 0;

    // The state entering this segment: zero, or carried in from the earlier segments' aggregates.
    for (int n = threadIdx.x; n < nstate; n += kThreads)
        running[n] = make_float2(1.f, kAggregateOnly ? 0.f : carried_state(args, row, segment, nstate, n));
    __syncthreads();

    for (int64_t chunk = begin; chunk < end; chunk += kChunk) {
        const int valid = static_cast<int>(end - chunk < kChunk ? end - chunk : kChunk);
        const bool whole = aligned && valid == kChunk;
        // Every input of the chunk is requested before any is used, so the loads overlap.
        float u_v[kItems], dt_v[kItems], z_v[kItems], b_v[kItems], c_v[kItems], y_v[kItems];
        const input_t *z_chunk = z ? z + chunk : nullptr;
        if (whole)
            load_chunk<true, kNState, kAggregateOnly>(u + chunk, delta + chunk, z_chunk, Bg + chunk, Cg + chunk,
                                                      valid, u_v, dt_v, z_v, b_v, c_v);
        else
            load_chunk<false, kNState, kAggregateOnly>(u + chunk, delta + chunk, z_chunk, Bg + chunk, Cg + chunk,
                                                       valid, u_v, dt_v, z_v, b_v, c_v);
        #pragma unroll
        for (int i = 0; i < kItems; ++i) {
            const bool in_range = threadIdx.x * kItems + i < valid;
            float v = dt_v[i] + bias;
            if (p.delta_softplus) v = softplus(v);
            dt_v[i] = in_range ? v : 0.f;  // delta 0, input 0: padding leaves the state unchanged
            y_v[i] = 0.f;
        }

        #pragma unroll (kNState > 0 ? kNState : 1)
        for (int n = 0; n < nstate; ++n) {
            if (kNState != 1) {
                if (whole) {
                    load_blocked<true>(Bg + n * L + chunk, valid, b_v);
                    if (!kAggregateOnly) load_blocked<true>(Cg + n * L + chunk, valid, c_v);
                } else {
                    load_blocked<false>(Bg + n * L + chunk, valid, b_v);
                    if (!kAggregateOnly) load_blocked<false>(Cg + n * L + chunk, valid, c_v);
                }
            }
            const float a2 = p.A[d * p.dstate + n] * kLog2e;
            float2 pair[kItems];
            #pragma unroll
            for (int i = 0; i < kItems; ++i) pair[i] = make_float2(fast_exp2(dt_v[i] * a2), dt_v[i] * u_v[i] * b_v[i]);
            RunningPrefix prefix{running[n]};
            Scan(scan_storage).InclusiveScan(pair, pair, ScanOp(), prefix);
            if (threadIdx.x == 0) running[n] = prefix.running;
            __syncthreads();  // running[n] and scan_storage are reused
            if (!kAggregateOnly) {
                #pragma unroll
                for (int i = 0; i < kItems; ++i) y_v[i] += pair[i].y * c_v[i];
            }
        }

        if (!kAggregateOnly) {
            #pragma unroll
            for (int i = 0; i < kItems; ++i) {
                y_v[i] += skip * u_v[i];
                if (z) y_v[i] *= __fdividef(z_v[i], 1.f + fast_exp2(-z_v[i] * kLog2e));
            }
            if (whole)
                store_blocked<true>(y + chunk, valid, y_v);
            else
                store_blocked<false>(y + chunk, valid, y_v);
        }
    }

    if (kAggregateOnly) {
        for (int n = threadIdx.x; n < nstate; n += kThreads)
            args.aggregates[(row * args.segments + segment) * nstate + n] = running[n];
    }
}

// ------------------------------------------------------------------ channel_scan_kernel: N = 16

constexpr int kLanes = 32;  // channels per warp: one block is one warp
constexpr int kTile = 32;   // tokens per tile: lane = token while loading and storing
// Resident warps per multiprocessor the kernel is built for (up to 128 registers each) and the rows
// of a tile loaded at once within that budget. Measured on an H100 against 12 warps loading all 32
// rows at once: 1.2-1.3x faster on long sequences with 32 channels per warp, the same with 16.
constexpr int kChannelWarpsPerSM = 16;
constexpr int kLoadRows = 8;

// Tokens [t, t + tokens) of channel rows [0, rows) into tile[row][lane], with the per-token scalar work
// done here, where lanes are tokens and the rows are independent: s_dt gets softplus(delta + bias),
// s_z the gate silu(z). Rows go kLoadRows at a time, each batch's loads issued before its first
// shared-memory store: the compiler cannot reorder them itself (a generic pointer may alias shared
// memory). kFull: a whole tile of kRows rows and 32 tokens, with no bounds checks. `bias` is the
// lane's own channel's delta_bias; every lane of the warp must call this.
template <bool kFull, bool kGate, int kRows, typename input_t>
__device__ __forceinline__ void load_tiles(const input_t *u, const input_t *delta, const input_t *z, int64_t L,
                                           int64_t t, int tokens, int rows, int lane, float bias, bool use_softplus,
                                           float (*s_u)[kTile + 1], float (*s_dt)[kTile + 1],
                                           float (*s_z)[kTile + 1]) {
    constexpr int kBatch = kLoadRows < kRows ? kLoadRows : kRows;
    const bool in_range = kFull || lane < tokens;
    #pragma unroll
    for (int first = 0; first < kRows; first += kBatch) {
        input_t u_v[kBatch], dt_v[kBatch], z_v[kBatch];
        #pragma unroll
        for (int r = 0; r < kBatch; ++r) {
            const int c = first + r;
            if (kFull || (in_range && c < rows)) {
                u_v[r] = u[c * L + t + lane];
                dt_v[r] = delta[c * L + t + lane];
                if (kGate) z_v[r] = z[c * L + t + lane];
            }
        }
        #pragma unroll
        for (int r = 0; r < kBatch; ++r) {
            const int c = first + r;
            const float row_bias = __shfl_sync(0xffffffffu, bias, c);
            if (kFull || (in_range && c < rows)) {
                s_u[c][lane] = to_float(u_v[r]);
                const float dt = to_float(dt_v[r]) + row_bias;
                s_dt[c][lane] = use_softplus ? softplus(dt) : dt;
                if (kGate) {
                    const float zv = to_float(z_v[r]);
                    s_z[c][lane] = __fdividef(zv, 1.f + fast_exp2(-zv * kLog2e));
                }
            }
        }
    }
}

// kParts lanes share a channel, each with kNState / kParts of its states (1: 32 channels per warp; 2: 16
// channels per warp, twice the warps for the same shape, so fewer sequences need splitting; 4 and 8 only
// when the caller asks for them). Their partial sums of y meet through log2(kParts) shuffles per token.
// kAggregateOnly: the first pass of a split sequence. kGate: z is given (never in the first pass).
template <typename input_t, int kNState, int kParts, bool kAggregateOnly, bool kGate>
__global__ void __launch_bounds__(kLanes, kChannelWarpsPerSM) channel_scan_kernel(KernelArgs args) {
    constexpr int kChannels = kLanes / kParts, kStates = kNState / kParts;
    // Tiles as [channel][token] (+1 column: conflict-free both ways); y reuses u's tile.
    __shared__ float s_u[kChannels][kTile + 1], s_dt[kChannels][kTile + 1], s_z[kGate ? kChannels : 1][kTile + 1];
    __shared__ __align__(16) float s_B[kTile][kNState], s_C[kAggregateOnly ? 1 : kTile][kNState];

    const avssm_scan_params &p = args.p;
    const int lane = threadIdx.x;
    const int channel = lane % kChannels, n0 = lane / kChannels * kStates;  // this lane's channel and first state
    const int64_t per_group = p.dim / p.groups;
    const int64_t warps_per_group = (per_group + kChannels - 1) / kChannels;
    const int64_t bg = blockIdx.x / warps_per_group;  // batch * groups + group
    const int64_t b = bg / p.groups, g = bg % p.groups;
    const int64_t d0 = g * per_group + (blockIdx.x % warps_per_group) * kChannels;
    const int channels = static_cast<int>(min(static_cast<int64_t>(kChannels), (g + 1) * per_group - d0));
    const int64_t d = d0 + (channel < channels ? channel : 0);  // idle lanes shadow channel d0 and store nothing
    const int64_t row0 = b * p.dim + d0, row = b * p.dim + d;
    const int64_t L = p.length;
    const int segment = blockIdx.y;
    const int64_t begin = static_cast<int64_t>(segment) * args.segment_length;
    const int64_t end = begin + args.segment_length < L ? begin + args.segment_length : L;

    const input_t *u = static_cast<const input_t *>(p.u) + row0 * L;
    const input_t *delta = static_cast<const input_t *>(p.delta) + row0 * L;
    const input_t *z = p.z ? static_cast<const input_t *>(p.z) + row0 * L : nullptr;
    const input_t *Bg = static_cast<const input_t *>(p.B) + bg * kNState * L;
    const input_t *Cg = static_cast<const input_t *>(p.C) + bg * kNState * L;
    input_t *y = static_cast<input_t *>(p.y) + row0 * L;
    const float bias = p.delta_bias ? p.delta_bias[d] : 0.f;  // lane c < kChannels holds channel c's
    const float skip = p.D ? p.D[d] : 0.f;

    float a2[kStates], h[kStates];
    #pragma unroll
    for (int i = 0; i < kStates; ++i) {
        a2[i] = p.A[d * kNState + n0 + i] * kLog2e;
        h[i] = kAggregateOnly ? 0.f : carried_state(args, row, segment, kNState, n0 + i);
    }
    float dt_sum = 0.f;

    for (int64_t t0 = begin; t0 < end; t0 += kTile) {
        const int tokens = static_cast<int>(end - t0 < kTile ? end - t0 : kTile);
        if (tokens == kTile && channels == kChannels)
            load_tiles<true, kGate, kChannels>(u, delta, z, L, t0, tokens, channels, lane, bias, p.delta_softplus,
                                               s_u, s_dt, s_z);
        else
            load_tiles<false, kGate, kChannels>(u, delta, z, L, t0, tokens, channels, lane, bias, p.delta_softplus,
                                                s_u, s_dt, s_z);
        if (lane < tokens) {
            float b_v[kNState], c_v[kNState];
            #pragma unroll
            for (int n = 0; n < kNState; ++n) {
                b_v[n] = to_float(Bg[n * L + t0 + lane]);
                c_v[n] = kAggregateOnly ? 0.f : to_float(Cg[n * L + t0 + lane]);
            }
            #pragma unroll
            for (int n = 0; n < kNState; ++n) {
                s_B[lane][n] = b_v[n];
                if (!kAggregateOnly) s_C[lane][n] = c_v[n];
            }
        }
        __syncwarp();

        #pragma unroll 2
        for (int t = 0; t < tokens; ++t) {
            const float u_t = s_u[channel][t], dt = s_dt[channel][t];
            const float dtu = dt * u_t;
            float part[4] = {0.f, 0.f, 0.f, 0.f};  // four short sums instead of one long chain
            #pragma unroll
            for (int i = 0; i < kStates; ++i) {
                h[i] = fast_exp2(dt * a2[i]) * h[i] + dtu * s_B[t][n0 + i];
                if (!kAggregateOnly) part[i % 4] += h[i] * s_C[t][n0 + i];
            }
            float out = (part[0] + part[1]) + (part[2] + part[3]);
            if (kAggregateOnly) {
                dt_sum += dt;
            } else {
                #pragma unroll
                for (int other = kChannels; other < kLanes; other *= 2) out += __shfl_xor_sync(0xffffffffu, out, other);
                out += skip * u_t;
                if (kGate) out *= s_z[channel][t];
                // y replaces u in the channel's own slot; every lane of the channel has read u_t (the shuffle).
                if (lane < kChannels) s_u[channel][t] = out;
            }
        }
        __syncwarp();

        if (!kAggregateOnly && lane < tokens)
            #pragma unroll 4
            for (int c = 0; c < channels; ++c) y[c * L + t0 + lane] = from_float<input_t>(s_u[c][lane]);
        __syncwarp();
    }

    if (kAggregateOnly && channel < channels) {
        float2 *agg = args.aggregates + (row * args.segments + segment) * kNState + n0;
        #pragma unroll
        for (int i = 0; i < kStates; ++i) agg[i] = make_float2(fast_exp2(a2[i] * dt_sum), h[i]);
    }
}

int multiprocessors() {
    int device = 0, count = 0;
    if (cudaGetDevice(&device) != cudaSuccess) return 0;
    if (cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) return 0;
    return count;
}

bool has_channel_path(int64_t dstate) { return dstate == 16; }

int64_t channel_warps(const avssm_scan_params &p, int parts) {
    const int64_t channels = kLanes / parts;
    return p.batch * p.groups * ((p.dim / p.groups + channels - 1) / channels);
}

// How a call runs: lanes per channel (channel path: channel_scan_kernel's kParts) and segments per sequence.
struct Plan {
    int parts, segments;
};

// Lanes per channel and segments per sequence for the channel kernel. Both fill the GPU (up to
// kChannelWarpsPerSM warps per multiprocessor): two lanes per channel doubles the warps at about 10%
// more time per token (measured on an H100); segments add the first pass over segments - 1 of them,
// which costs about as much as the second (the exponentials). Take the plan that minimizes
// work / min(1, warps / capacity). 4 and 8 lanes per channel are unmeasured: they run only when
// p.lanes_per_channel asks for them (plugins/README.md says what they may gain).
Plan channel_plan(const avssm_scan_params &p, int sms) {
    const int64_t tiles = (p.length + kTile - 1) / kTile;
    const double full = static_cast<double>(kChannelWarpsPerSM) * std::max(sms, 1);
    const int first = p.lanes_per_channel ? p.lanes_per_channel : 1, last = p.lanes_per_channel ? p.lanes_per_channel : 2;
    Plan best{first, 1};
    double best_cost = 1e30;
    for (int parts = first; parts <= last; parts *= 2) {
        const int64_t warps = channel_warps(p, parts);
        const int64_t most = sms <= 0 ? 1 : std::min<int64_t>({64, std::max<int64_t>(1, tiles / 2),
                                                                static_cast<int64_t>((full + warps - 1) / warps)});
        for (int64_t s = 1; s <= most; ++s) {
            const double cost = (parts == 1 ? 1.0 : 1.1) * (2.0 - 1.0 / s) / std::min(1.0, warps * s / full);
            if (cost < best_cost) best = {parts, static_cast<int>(s)}, best_cost = cost;
        }
    }
    return best;
}

// Segments per row for the block-scan kernel: about kSegmentFill blocks per multiprocessor when batch * dim is
// smaller than that.
int block_scan_segments(int64_t rows, int64_t length, int sms) {
    const int64_t chunks = (length + kChunk - 1) / kChunk;
    if (sms <= 0 || chunks < 4) return 1;
    const int64_t want = (static_cast<int64_t>(kSegmentFill) * sms + rows - 1) / rows;
    return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({want, chunks / 2, 64})));
}

// Either kernel's passes: with split sequences, the aggregates of segments 0 .. S-2 first (the last
// segment's is never needed), then the scan of every segment.
using Kernel = void (*)(KernelArgs);
cudaError_t launch_passes(Kernel aggregate, Kernel scan, int64_t blocks, int threads, const KernelArgs &args,
                          cudaStream_t stream) {
    const unsigned x = static_cast<unsigned>(blocks);
    if (args.segments > 1) {
        aggregate<<<dim3(x, args.segments - 1), threads, 0, stream>>>(args);
        cudaError_t err = cudaGetLastError();
        if (err != cudaSuccess) return err;
    }
    scan<<<dim3(x, args.segments), threads, 0, stream>>>(args);
    return cudaGetLastError();
}

template <typename input_t, int kParts>
cudaError_t launch_channel(const KernelArgs &args, cudaStream_t stream) {
    return launch_passes(channel_scan_kernel<input_t, 16, kParts, true, false>,
                         args.p.z ? channel_scan_kernel<input_t, 16, kParts, false, true>
                                  : channel_scan_kernel<input_t, 16, kParts, false, false>,
                         channel_warps(args.p, kParts), kLanes, args, stream);
}

template <typename input_t>
cudaError_t launch(const KernelArgs &args, int parts, cudaStream_t stream) {
    const int64_t rows = args.p.batch * args.p.dim;
    switch (args.p.dstate) {  // fast paths: Vim and VMamba v0 (N=16), VMamba v2 (N=1)
        case 16:
            switch (parts) {
                case 8: return launch_channel<input_t, 8>(args, stream);
                case 4: return launch_channel<input_t, 4>(args, stream);
                case 2: return launch_channel<input_t, 2>(args, stream);
                default: return launch_channel<input_t, 1>(args, stream);
            }
        case 1:
            return launch_passes(scan_kernel<input_t, 1, true>, scan_kernel<input_t, 1, false>, rows, kThreads, args,
                                 stream);
        default:
            return launch_passes(scan_kernel<input_t, 0, true>, scan_kernel<input_t, 0, false>, rows, kThreads, args,
                                 stream);
    }
}

bool valid_params(const avssm_scan_params *params) {
    if (!params) return false;
    const avssm_scan_params &p = *params;
    return p.batch >= 1 && p.dim >= 1 && p.length >= 1 && p.dstate >= 1 && p.dstate <= AVSSM_SCAN_MAX_STATE &&
           p.groups >= 1 && p.dim % p.groups == 0 && p.batch * p.dim <= 0x7fffffffLL && p.u && p.delta && p.A &&
           p.B && p.C && p.y &&
           (p.input_type == AVSSM_FLOAT32 || p.input_type == AVSSM_FLOAT16 || p.input_type == AVSSM_BFLOAT16) &&
           (p.lanes_per_channel == 0 || p.lanes_per_channel == 1 || p.lanes_per_channel == 2 ||
            p.lanes_per_channel == 4 || p.lanes_per_channel == 8);
}

// The plan for `sms` multiprocessors, with no more segments than the workspace holds: a caller may hand
// less than the plan wants (a TensorRT engine sized its workspace on the GPU it was built on).
Plan plan_call(const avssm_scan_params &p, int sms) {
    Plan plan = has_channel_path(p.dstate) ? channel_plan(p, sms)
                                           : Plan{1, block_scan_segments(p.batch * p.dim, p.length, sms)};
    const size_t per_segment = static_cast<size_t>(p.batch * p.dim) * p.dstate * sizeof(float2);
    const size_t fit = p.workspace ? p.workspace_bytes / per_segment : 0;
    if (static_cast<size_t>(plan.segments) > fit) plan.segments = fit > 1 ? static_cast<int>(fit) : 1;
    return plan;
}

}  // namespace
}  // namespace avssm

extern "C" size_t avssm_selective_scan_workspace_size(int64_t batch, int64_t dim, int64_t length, int64_t dstate,
                                                      int num_multiprocessors) {
    // One bound for a whole shape range, above rows * segments for every shape up to these:
    // channel path: segments <= 1 + kChannelWarpsPerSM * SMs / warps and rows <= 32 * warps (either layout);
    // block-scan path: rows * segments < rows + kSegmentFill * SMs.
    if (length < 2 * avssm::kTile) return 0;
    const int64_t spread = avssm::has_channel_path(dstate)
                               ? static_cast<int64_t>(avssm::kLanes) * avssm::kChannelWarpsPerSM
                               : avssm::kSegmentFill;
    return static_cast<size_t>(batch * dim + spread * num_multiprocessors) * dstate * sizeof(float2);
}

extern "C" cudaError_t avssm_selective_scan_plan(const avssm_scan_params *params, int num_multiprocessors,
                                                 int *lanes_per_channel, int *segments) {
    if (!avssm::valid_params(params) || !lanes_per_channel || !segments) return cudaErrorInvalidValue;
    const avssm::Plan plan = avssm::plan_call(*params, num_multiprocessors);
    *lanes_per_channel = plan.parts;
    *segments = plan.segments;
    return cudaSuccess;
}

extern "C" cudaError_t avssm_selective_scan_fwd(const avssm_scan_params *params, cudaStream_t stream) {
    if (!avssm::valid_params(params)) return cudaErrorInvalidValue;
    const avssm_scan_params &p = *params;
    const avssm::Plan plan = avssm::plan_call(p, avssm::multiprocessors());
    avssm::KernelArgs args{p, plan.segments, 0, plan.segments > 1 ? static_cast<float2 *>(p.workspace) : nullptr};
    // Segment boundaries on whole tiles (channel path) or chunks (block-scan path).
    const int64_t unit = avssm::has_channel_path(p.dstate) ? avssm::kTile : avssm::kChunk;
    const int64_t units = (p.length + unit - 1) / unit;
    args.segment_length = ((units + args.segments - 1) / args.segments) * unit;
    switch (p.input_type) {
        case AVSSM_FLOAT32: return avssm::launch<float>(args, plan.parts, stream);
        case AVSSM_FLOAT16: return avssm::launch<__half>(args, plan.parts, stream);
        case AVSSM_BFLOAT16: return avssm::launch<__nv_bfloat16>(args, plan.parts, stream);
    }
    return cudaErrorInvalidValue;
}

extern "C" int avssm_current_multiprocessors(void) { return avssm::multiprocessors(); }

extern "C" const char *avssm_cuda_error_string(cudaError_t error) { return cudaGetErrorString(error); }

extern "C" int avssm_selective_scan_api_version(void) { return AVSSM_SCAN_API_VERSION; }
