// channel_scan_kernel: the channel layout of the N = 16 scan (Vim, VMamba v0), the one the plan runs.
//
// One warp per 32 channels of one (batch, group), or per 16 channels with two lanes per channel holding 8
// states each when that fills the GPU better (4 and 8 lanes per channel only when the caller asks); each lane
// walks its channel's sequence in order with its states in registers, so there is no scan across threads at
// all. Tiles of 32 tokens of u, delta and z are read once from global memory (coalesced, lane = token;
// softplus and the z gate computed there) into shared memory and read back transposed (lane = channel); B and
// C of a tile are read once per warp and broadcast to its channels; y is written once through the same tile.
// Per token and state: one exponential, one multiply and two multiply-adds. Long sequences split into
// segments (kAggregateOnly: the first pass). Written against scan_common.cuh and CUDA's warp primitives only
// (no CUB), so the tests also run it on the CPU, thread by thread (tests/native/cuda_on_cpu.h).
#pragma once

#include "scan_common.cuh"

namespace avssm {
namespace {

constexpr int kLanes = 32;  // channels per warp: one block is one warp
constexpr int kTile = 32;   // tokens per tile: lane = token while loading and storing
// Resident warps per multiprocessor the kernel is built for (up to 128 registers each) and the rows
// of a tile loaded at once within that budget. Measured on an H100 against 12 warps loading all 32
// rows at once: 1.2-1.3x faster on long sequences with 32 channels per warp, the same with 16.
constexpr int kChannelWarpsPerSM = 16;
constexpr int kLoadRows = 8;

// The kernel's grid: one warp (block) per `kLanes / parts` channels of each (batch, group).
inline int64_t channel_warps(const avssm_scan_params &p, int parts) {
    const int64_t channels = kLanes / parts;
    return p.batch * p.groups * ((p.dim / p.groups + channels - 1) / channels);
}

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
    const int64_t group_left = (g + 1) * per_group - d0;  // channels of the group from d0 on
    const int channels = static_cast<int>(group_left < kChannels ? group_left : kChannels);
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

}  // namespace
}  // namespace avssm
