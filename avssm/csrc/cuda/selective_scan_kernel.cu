// avssm selective scan forward: the CUDA kernels behind avssm/csrc/include/avssm/selective_scan.h, their
// plan (layout and split) and the C API.
//
// Semantics: avssm/csrc/trt/README.md (mamba_ssm's selective scan). Three kernels, one contract:
//
// * channel_scan_kernel (channel_scan_kernel.cuh), the N = 16 path (Vim, VMamba v0): lanes own channels and
//   walk their sequences in order with the states in registers.
// * token_scan_kernel (token_scan_kernel.cuh), an N = 16 layout for batch 1 that runs only when
//   avssm_scan_params.layout asks for it, until a GPU has timed it: threads own 32 consecutive tokens, a
//   block-wide scan per state, never split.
// * scan_kernel (here), every other N (1 to 256; compiled for N = 1 too, where it beats the channel kernel:
//   that shape is memory-bound and this one keeps more loads in flight): one block per (batch,
//   channel); chunks of kThreads * kItems tokens, each thread's 8 consecutive tokens of every input
//   requested at once with 16-byte loads; per state a block-wide inclusive scan (CUB) over (decay, input)
//   pairs with the running state carried from chunk to chunk on chip.
//
// channel_scan_kernel and scan_kernel split long sequences into segments across blocks when batch * dim
// alone cannot fill the GPU: a first pass writes each segment's (total decay, end state from zero) per state
// to the workspace, the second starts each segment from the state its predecessors carry in (a fold of at
// most 64 pairs). Math and state in fp32; 64-bit offsets; no allocation, no host synchronization,
// deterministic (CUDA-graph capturable).
#include "avssm/selective_scan.h"

#include <algorithm>
#include <cstdint>

#include <cub/block/block_scan.cuh>

#include "channel_scan_kernel.cuh"
#include "scan_common.cuh"
#include "token_scan_kernel.cuh"

namespace avssm {
namespace {

constexpr int kThreads = 128;
constexpr int kItems = 8;  // 16 measured 10-25% slower at N = 1 (H100)
constexpr int kChunk = kThreads * kItems;
// Blocks per multiprocessor below which the block scan splits sequences. Measured on an H100 at batch 1,
// N = 1 (dim 384-6144, L 2k-130k): not splitting was fastest or within 7% of it down to dim 384
// (0.4-0.8 blocks per multiprocessor), where its first pass's second read of u, delta and B costs more
// than the idle multiprocessors; splitting to 16 blocks per multiprocessor cost up to 1.4x (dim 768).
constexpr int kSegmentFill = 2;

// Supplies the state entering the chunk and advances it by the chunk's aggregate.
struct RunningPrefix {
    float2 running;
    __device__ __forceinline__ float2 operator()(float2 block_aggregate) {
        float2 old = running;
        running = ScanOp()(running, block_aggregate);
        return old;
    }
};

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
    const bool aligned = rows_aligned<input_t>(p);  // chunks start at multiples of kChunk

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

int multiprocessors() {
    int device = 0, count = 0;
    if (cudaGetDevice(&device) != cudaSuccess) return 0;
    if (cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) return 0;
    return count;
}

bool has_channel_path(int64_t dstate) { return dstate == 16; }

bool runs_token_layout(const avssm_scan_params &p) { return p.dstate == 16 && p.layout == AVSSM_LAYOUT_TOKENS; }

// How a call runs: lanes per channel (channel layout: channel_scan_kernel's kParts; 1 elsewhere) and segments
// per sequence.
struct Plan {
    int parts, segments;
};

// Lanes per channel and segments per sequence for the channel kernel. Both fill the GPU (up to
// kChannelWarpsPerSM warps per multiprocessor): two lanes per channel doubles the warps at about 10%
// more time per token (measured on an H100); segments add the first pass over segments - 1 of them,
// which costs about as much as the second (the exponentials). Take the plan that minimizes
// work / min(1, warps / capacity). 4 and 8 lanes per channel are unmeasured: they run only when
// p.lanes_per_channel asks for them (docs/notes/kernels.md says what they may gain).
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
    if (runs_token_layout(args.p)) {
        const unsigned blocks = static_cast<unsigned>(rows);
        if (args.p.z)
            token_scan_kernel<input_t, true><<<blocks, kTokenThreads, 0, stream>>>(args);
        else
            token_scan_kernel<input_t, false><<<blocks, kTokenThreads, 0, stream>>>(args);
        return cudaGetLastError();
    }
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
            p.lanes_per_channel == 4 || p.lanes_per_channel == 8) &&
           (p.layout == AVSSM_LAYOUT_PLAN || p.layout == AVSSM_LAYOUT_CHANNEL ||
            (p.layout == AVSSM_LAYOUT_TOKENS && p.lanes_per_channel == 0));
}

// The plan for `sms` multiprocessors, with no more segments than the workspace holds: a caller may hand
// less than the plan wants (a TensorRT engine sized its workspace on the GPU it was built on).
Plan plan_call(const avssm_scan_params &p, int sms) {
    if (runs_token_layout(p)) return Plan{1, 1};
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
