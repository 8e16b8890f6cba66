// token_scan_kernel: the token layout of the N = 16 scan, a candidate for batch 1 (docs/kernels.md). It runs
// only when avssm_scan_params.layout asks for it, until a GPU has timed it.
//
// One block of 128 threads per (batch, channel), each thread owning 32 consecutive tokens of a 4096-token
// chunk, so batch 1 at dim 768 is 768 blocks of 4 warps and the sequence is never split (every exponential is
// computed once). Per chunk, u, delta (and z at the end) are read once with 16-byte loads; then per state:
//   1. each thread runs its 32 tokens from state zero, keeping each token's decay and input;
//   2. the block scans the threads' (total decay, end state) pairs: a warp scan by shuffles, the warps' totals
//      through shared memory (one barrier per state), starting from the state the previous chunk ended with;
//   3. each thread runs its tokens again from the state entering them, adding C * h into y; the last thread's
//      final h is the state the next chunk starts from.
// Per token and state: one exponential, two multiplies and one multiply-add in step 1, two multiply-adds in
// step 3. Counted in sm_90 SASS (docs/notes/kernels.md): the state loop is 9.8 instructions per exponential in
// fp16 and 8.1 in fp32; with the per-token work before it (conversions, bias, softplus) and y after it, a whole
// chunk is 11.1 and 9.3.
// Written against the helpers of scan_common.cuh and CUDA's warp primitives only (no CUB), so the tests can
// also run it on the CPU, thread by thread (tests/native/cuda_on_cpu.h).
#pragma once

#include "scan_common.cuh"

namespace avssm {
namespace {

constexpr int kTokenThreads = 128;
constexpr int kTokenWarps = kTokenThreads / 32;
constexpr int kTokenItems = 32;  // tokens per thread: amortizes the block scan over 32 exponentials
constexpr int kTokenChunk = kTokenThreads * kTokenItems;
constexpr int kTokenStates = 16;

// __shfl_up_sync that also says whether lane - offset exists: the shuffle instruction sets that predicate
// anyway, so the scans below need no lane compare of their own (they run once per state).
__device__ __forceinline__ float shfl_up_from(float v, int offset, bool &from_lane) {
#ifdef __CUDA_ARCH__
    float r;
    int exists;
    asm volatile("{\n\t.reg .pred p;\n\tshfl.sync.up.b32 %0|p, %2, %3, 0, 0xffffffff;\n\tselp.s32 %1, 1, 0, p;\n\t}"
                 : "=f"(r), "=r"(exists)
                 : "f"(v), "r"(offset));
    from_lane = exists;
    return r;
#else
    from_lane = threadIdx.x % 32 >= static_cast<unsigned>(offset);
    return __shfl_up_sync(0xffffffffu, v, offset);
#endif
}

// Inclusive scan of the warp's (decay, input) pairs in lane order: lane i ends with lanes 0..i combined.
__device__ __forceinline__ float2 warp_inclusive_scan(float2 x) {
    #pragma unroll
    for (int offset = 1; offset < 32; offset *= 2) {
#ifdef __CUDA_ARCH__
        // ScanOp()((a, b), x) in the lanes the shuffle found a source for, as two predicated instructions (the
        // compiler's version computes x.y unpredicated and selects).
        asm volatile("{\n\t.reg .pred p;\n\t.reg .f32 a, b;\n\t"
                     "shfl.sync.up.b32 a|p, %0, %2, 0, 0xffffffff;\n\t"
                     "shfl.sync.up.b32 b, %1, %2, 0, 0xffffffff;\n\t"
                     "@p fma.rn.f32 %1, %0, b, %1;\n\t"
                     "@p mul.rn.f32 %0, a, %0;\n\t}"
                     : "+f"(x.x), "+f"(x.y)
                     : "r"(offset));
#else
        bool from_lane;
        const float a = shfl_up_from(x.x, offset, from_lane);
        const float b = __shfl_up_sync(0xffffffffu, x.y, offset);
        if (from_lane) x = ScanOp()(make_float2(a, b), x);
#endif
    }
    return x;
}

// kGate: z is given. Registers: delta, delta * u, y, the decays and the inputs of the current state (32 each).
template <typename input_t, bool kGate>
__global__ void __launch_bounds__(kTokenThreads, 2) token_scan_kernel(KernelArgs args) {
    // By state parity, so one barrier per state suffices: kTokenWarps - 1 identities, then the totals of warps
    // 0 .. kTokenWarps - 2, so warp w folds entries w .. w + kTokenWarps - 2 in order and needs no select by
    // warp (the last warp's total is not needed: the last thread's h carries it).
    __shared__ float2 s_warp_total[2][2 * kTokenWarps - 2];
    // Per state, read in one load: A * log2(e), the exponent's factor, and the state entering the chunk. Every
    // thread reads state n's carry before state n's barrier; after it, the last thread writes the next chunk's.
    struct StateN {
        float a2, carry;
    };
    __shared__ StateN s_state[kTokenStates];

    const avssm_scan_params &p = args.p;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int64_t row = blockIdx.x;  // batch * dim + channel
    const int64_t b = row / p.dim, d = row % p.dim;
    const int64_t g = d / (p.dim / p.groups);
    const int64_t L = p.length;
    const input_t *u = static_cast<const input_t *>(p.u) + row * L;
    const input_t *delta = static_cast<const input_t *>(p.delta) + row * L;
    const input_t *z = kGate ? static_cast<const input_t *>(p.z) + row * L : nullptr;
    const input_t *Bg = static_cast<const input_t *>(p.B) + (b * p.groups + g) * kTokenStates * L;
    const input_t *Cg = static_cast<const input_t *>(p.C) + (b * p.groups + g) * kTokenStates * L;
    input_t *y = static_cast<input_t *>(p.y) + row * L;
    const float bias = p.delta_bias ? p.delta_bias[d] : 0.f;
    const float skip = p.D ? p.D[d] : 0.f;
    const bool aligned = rows_aligned<input_t>(p);  // chunks start at multiples of kTokenChunk

    if (threadIdx.x < 2 * (kTokenWarps - 1))
        s_warp_total[threadIdx.x / (kTokenWarps - 1)][threadIdx.x % (kTokenWarps - 1)] = make_float2(1.f, 0.f);
    if (threadIdx.x < kTokenStates) s_state[threadIdx.x] = {p.A[d * kTokenStates + threadIdx.x] * kLog2e, 0.f};
    __syncthreads();

    for (int64_t chunk = 0; chunk < L; chunk += kTokenChunk) {
        const int valid = static_cast<int>(L - chunk < kTokenChunk ? L - chunk : kTokenChunk);
        const bool whole = aligned && valid == kTokenChunk;
        float dt[kTokenItems], dtu[kTokenItems], y_v[kTokenItems];
        if (whole) {
            load_blocked<true>(u + chunk, valid, dtu);
            load_blocked<true>(delta + chunk, valid, dt);
        } else {
            load_blocked<false>(u + chunk, valid, dtu);
            load_blocked<false>(delta + chunk, valid, dt);
        }
        // Tokens past `valid` (in the last chunk only) read as zeros and are not masked: what they do to the
        // state reaches only later such tokens and the state after the last chunk, and neither is output.
        if (p.delta_softplus) {  // one branch per chunk, not per token
            #pragma unroll
            for (int i = 0; i < kTokenItems; ++i) dt[i] = softplus(dt[i] + bias);
        } else {
            #pragma unroll
            for (int i = 0; i < kTokenItems; ++i) dt[i] += bias;
        }
        float dt_sum = 0.f;
        #pragma unroll
        for (int i = 0; i < kTokenItems; ++i) {
            y_v[i] = skip * dtu[i];
            dtu[i] *= dt[i];
            dt_sum += dt[i];
        }

        // This thread's tokens of state n's B and C rows, advanced by L per state.
        const input_t *B_n = Bg + chunk + threadIdx.x * kTokenItems, *C_n = Cg + chunk + threadIdx.x * kTokenItems;
        const int count = valid - static_cast<int>(threadIdx.x) * kTokenItems;  // of them in the sequence
        #pragma unroll 2  // two states per iteration: the parity of s_warp_total and the pointer steps are constants
        for (int n = 0; n < kTokenStates; ++n, B_n += L, C_n += L) {
            // B and C stay packed as loaded until used, so the exponentials, which need neither, go first.
            PackedElements<input_t, kTokenItems> b_n, c_n;
            if (whole) {
                load_packed<true>(B_n, count, b_n);
                load_packed<true>(C_n, count, c_n);
            } else {
                load_packed<false>(B_n, count, b_n);
                load_packed<false>(C_n, count, c_n);
            }
            const StateN state_n = s_state[n];
            float decay[kTokenItems], x[kTokenItems];
            #pragma unroll
            for (int i = 0; i < kTokenItems; ++i) decay[i] = fast_exp2(dt[i] * state_n.a2);
            // 1. The thread's tokens from state zero.
            float h = 0.f;
            #pragma unroll
            for (int i = 0; i < kTokenItems; ++i) {
                x[i] = b_n[i] * dtu[i];
                h = decay[i] * h + x[i];
            }
            // 2. The state entering this thread's tokens. The thread's total decay is one exponential of its
            // summed deltas (equal to the product of its decays up to rounding).
            const float2 upto = warp_inclusive_scan(make_float2(fast_exp2(dt_sum * state_n.a2), h));
            bool after_lane;  // false in lane 0
            const float before_a = shfl_up_from(upto.x, 1, after_lane);
            const float before_b = __shfl_up_sync(0xffffffffu, upto.y, 1);
            if (lane == 31 && warp < kTokenWarps - 1) s_warp_total[n & 1][kTokenWarps - 1 + warp] = upto;
            float h_warp = state_n.carry;  // the state entering the chunk, then the state entering this warp's tokens
            __syncthreads();
            #pragma unroll
            for (int w = 0; w < kTokenWarps - 1; ++w) {
                const float2 total = s_warp_total[n & 1][warp + w];  // identity, then warps 0 .. warp - 1
                h_warp = total.x * h_warp + total.y;
            }
            // 3. The thread's tokens again, from the state entering them.
            h = after_lane ? before_a * h_warp + before_b : h_warp;
            #pragma unroll
            for (int i = 0; i < kTokenItems; ++i) {
                h = decay[i] * h + x[i];
                y_v[i] += h * c_n[i];
            }
            if (threadIdx.x == kTokenThreads - 1) s_state[n].carry = h;
        }

        if (kGate) {
            float z_v[kTokenItems];
            if (whole)
                load_blocked<true>(z + chunk, valid, z_v);
            else
                load_blocked<false>(z + chunk, valid, z_v);
            #pragma unroll
            for (int i = 0; i < kTokenItems; ++i) y_v[i] *= __fdividef(z_v[i], 1.f + fast_exp2(-z_v[i] * kLog2e));
        }
        if (whole)
            store_blocked<true>(y + chunk, valid, y_v);
        else
            store_blocked<false>(y + chunk, valid, y_v);
    }
}

}  // namespace
}  // namespace avssm
