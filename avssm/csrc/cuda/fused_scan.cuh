// The fused layouts' traversals (avssm_fused_scan_fwd, fused_scan.cu): the kernel that writes each direction's
// sequence out of the map or sequence where it lies, and the one that merges the directions' outputs back.
// Definitions: cross_selective_scan_ref (avssm/ops/cross_scan.py), bidirectional_selective_scan_ref
// (avssm/ops/bidirectional_scan.py). Both kernels loop over their elements with a stride of `grid_threads`
// (the launch's blocks x kFusedThreads), so tests can run them on the CPU with a grid of a few blocks
// (tests/native/fused_on_cpu.cpp).
#pragma once

#include "scan_common.cuh"

namespace avssm {
namespace {

constexpr int kFusedThreads = 256;

// Where direction k's step t lies in the map (cross-2d: row-major, column-major, both reversed) or the
// sequence (bidirectional: forwards, backwards), and which step of direction k visits a position.
struct Traversal {
    int layout;
    int64_t height, width;

    __host__ __device__ int64_t length() const { return height * width; }

    __host__ __device__ int64_t position(int k, int64_t t) const {
        const int64_t last = length() - 1;
        if (layout == AVSSM_FUSED_BIDIRECTIONAL) return k ? last - t : t;
        const int64_t s = k >= 2 ? last - t : t;
        return (k & 1) ? (s % height) * width + s / height : s;
    }

    // The step at which direction 1 (column-major) visits map position p.
    __host__ __device__ int64_t column_step(int64_t p) const { return (p % width) * height + p / width; }
};

// dst (batch, K, channels, L), K directions: dst[b, k, c, t] = src[b * src_batch + k * src_direction + c * L +
// position(k, t)]. src_direction is 0 for a tensor all directions share (cross-2d's u, bidirectional's z).
template <typename T>
__global__ void __launch_bounds__(kFusedThreads)
    traverse_kernel(const T *src, T *dst, Traversal tr, int directions, int64_t channels, int64_t src_batch,
                    int64_t src_direction, int64_t total, int64_t grid_threads) {
    const int64_t L = tr.length();
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * kFusedThreads + threadIdx.x; i < total; i += grid_threads) {
        const int64_t t = i % L, row = i / L;
        const int64_t c = row % channels, k = (row / channels) % directions, b = row / (channels * directions);
        dst[i] = src[b * src_batch + k * src_direction + c * L + tr.position(static_cast<int>(k), t)];
    }
}

// y (batch, channels, L) from ys (batch, K, channels, L), each direction's output in its own order, summed in
// fp32 as the contract sums them: cross-2d (y0 + y2) + (y1 + y3), bidirectional (y0 + y1) / 2.
template <typename T>
__global__ void __launch_bounds__(kFusedThreads)
    merge_kernel(const T *ys, T *y, Traversal tr, int64_t channels, int64_t total, int64_t grid_threads) {
    const int64_t L = tr.length(), last = L - 1;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * kFusedThreads + threadIdx.x; i < total; i += grid_threads) {
        const int64_t p = i % L, c = (i / L) % channels, b = i / (L * channels);
        const int directions = tr.layout == AVSSM_FUSED_CROSS_2D ? 4 : 2;
        const T *row = ys + (b * directions * channels + c) * L;  // direction k's output: row + k * channels * L
        const int64_t plane = channels * L;
        float v;
        if (tr.layout == AVSSM_FUSED_CROSS_2D) {
            const int64_t t1 = tr.column_step(p);
            v = (to_float(row[p]) + to_float(row[2 * plane + last - p])) +
                (to_float(row[plane + t1]) + to_float(row[3 * plane + last - t1]));
        } else {
            v = (to_float(row[p]) + to_float(row[plane + last - p])) / 2.f;
        }
        y[i] = from_float<T>(v);
    }
}

// The workspace, in order: the directions' u, delta, B, C, outputs and, for the bidirectional layout, z (room for
// z whether or not the node has one, so that one size covers both; cross-2d never has z), then the plain scan's own
// workspace.
struct Carve {
    size_t seq, state, copies;  // bytes of one (batch, K * dim, L) copy, of one (batch, K, N, L) copy, of all
};

inline int fused_directions(int layout) { return layout == AVSSM_FUSED_CROSS_2D ? 4 : 2; }

inline Carve carve(int layout, int64_t batch, int64_t dim, int64_t length, int64_t dstate, avssm_dtype type) {
    constexpr size_t kAlign = 256;
    const auto aligned = [](size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; };
    const size_t k = static_cast<size_t>(fused_directions(layout)), e = type == AVSSM_FLOAT32 ? 4 : 2;
    const size_t seq = aligned(static_cast<size_t>(batch) * k * dim * length * e);
    const size_t state = aligned(static_cast<size_t>(batch) * k * dstate * length * e);
    const size_t sequences = layout == AVSSM_FUSED_CROSS_2D ? 3 : 4;  // u, delta, outputs (and z)
    return {seq, state, sequences * seq + 2 * state};
}

// One traverse_kernel call: dst (batch, K, channels, L) from src.
struct Copy {
    const void *src;
    void *dst;
    int64_t channels, src_batch, src_direction;
};

// A fused call as its parts: the copies to write (z's last, when there is one), the plain scan over them, and
// where the directions' outputs are for the merge. `p` must be valid and its workspace at least carve(...).copies.
struct FusedPlan {
    Traversal tr;
    Copy copies[5];
    int count;
    avssm_scan_params scan;
};

inline FusedPlan fused_plan(const avssm_fused_scan_params &p) {
    const int k = fused_directions(p.layout);
    const bool cross = p.layout == AVSSM_FUSED_CROSS_2D;
    const int64_t L = p.height * p.width, dim = p.dim, N = p.dstate;
    const Carve c = carve(p.layout, p.batch, dim, L, N, p.input_type);
    char *w = static_cast<char *>(p.workspace);
    void *us = w, *ds = w + c.seq, *Bs = w + 2 * c.seq, *Cs = w + 2 * c.seq + c.state;
    void *ys = w + 2 * c.seq + 2 * c.state, *zs = p.z ? w + 3 * c.seq + 2 * c.state : nullptr;
    FusedPlan plan{Traversal{p.layout, p.height, p.width}, {}, 0, {}};
    // u: cross-2d's map is every direction's; bidirectional's channels dim + d are direction 1's.
    plan.copies[plan.count++] = {p.u, us, dim, cross ? dim * L : 2 * dim * L, cross ? 0 : dim * L};
    plan.copies[plan.count++] = {p.delta, ds, dim, k * dim * L, dim * L};
    plan.copies[plan.count++] = {p.B, Bs, N, k * N * L, N * L};
    plan.copies[plan.count++] = {p.C, Cs, N, k * N * L, N * L};
    if (zs) plan.copies[plan.count++] = {p.z, zs, dim, dim * L, 0};  // one gate for both directions
    avssm_scan_params &scan = plan.scan;
    scan.batch = p.batch;
    scan.dim = k * dim;
    scan.length = L;
    scan.dstate = N;
    scan.groups = k;
    scan.input_type = p.input_type;
    scan.u = us;
    scan.delta = ds;
    scan.A = p.A;
    scan.B = Bs;
    scan.C = Cs;
    scan.D = p.D;
    scan.z = zs;
    scan.delta_bias = p.delta_bias;
    scan.delta_softplus = p.delta_softplus;
    scan.y = ys;
    scan.workspace = p.workspace_bytes > c.copies ? w + c.copies : nullptr;
    scan.workspace_bytes = scan.workspace ? p.workspace_bytes - c.copies : 0;
    return plan;
}

inline bool valid_fused(const avssm_fused_scan_params *params) {
    if (!params) return false;
    const avssm_fused_scan_params &p = *params;
    const bool cross = p.layout == AVSSM_FUSED_CROSS_2D, bidirectional = p.layout == AVSSM_FUSED_BIDIRECTIONAL;
    return (cross || (bidirectional && p.height == 1)) && p.batch >= 1 && p.dim >= 1 && p.height >= 1 &&
           p.width >= 1 && p.dstate >= 1 && p.dstate <= AVSSM_SCAN_MAX_STATE && p.u && p.delta && p.A && p.B &&
           p.C && p.y && !(cross && p.z) && p.workspace &&
           (p.input_type == AVSSM_FLOAT32 || p.input_type == AVSSM_FLOAT16 || p.input_type == AVSSM_BFLOAT16) &&
           p.workspace_bytes >= carve(p.layout, p.batch, p.dim, p.height * p.width, p.dstate, p.input_type).copies;
}

}  // namespace
}  // namespace avssm
