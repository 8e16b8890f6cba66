// avssm_fused_scan_fwd (include/avssm/selective_scan.h): the fused layouts through the workspace. Each
// direction's sequence is written into the workspace (traverse_kernel), the directions run as groups of one
// avssm_selective_scan_fwd call, and merge_kernel writes y: fused_plan in fused_scan.cuh lays it out. The result
// is the contract's; a kernel that reads the map in place needs a GPU to design and measure, so this version
// moves the copies' bytes.
#include "fused_scan.cuh"

#include <algorithm>

namespace avssm {
namespace {

int64_t blocks_for(int64_t total) {
    return std::max<int64_t>(1, std::min<int64_t>((total + kFusedThreads - 1) / kFusedThreads, 65535));
}

template <typename T>
cudaError_t run(const avssm_fused_scan_params &p, cudaStream_t stream) {
    const FusedPlan plan = fused_plan(p);
    const int k = fused_directions(p.layout);
    const int64_t L = plan.tr.length();
    for (int i = 0; i < plan.count; ++i) {
        const Copy &c = plan.copies[i];
        const int64_t total = p.batch * k * c.channels * L, blocks = blocks_for(total);
        traverse_kernel<T><<<static_cast<unsigned>(blocks), kFusedThreads, 0, stream>>>(
            static_cast<const T *>(c.src), static_cast<T *>(c.dst), plan.tr, k, c.channels, c.src_batch,
            c.src_direction, total, blocks * kFusedThreads);
        const cudaError_t err = cudaGetLastError();
        if (err != cudaSuccess) return err;
    }
    const cudaError_t err = avssm_selective_scan_fwd(&plan.scan, stream);
    if (err != cudaSuccess) return err;
    const int64_t total = p.batch * p.dim * L, blocks = blocks_for(total);
    merge_kernel<T><<<static_cast<unsigned>(blocks), kFusedThreads, 0, stream>>>(
        static_cast<const T *>(plan.scan.y), static_cast<T *>(p.y), plan.tr, p.dim, total, blocks * kFusedThreads);
    return cudaGetLastError();
}

}  // namespace
}  // namespace avssm

extern "C" size_t avssm_fused_scan_workspace_size(int layout, int64_t batch, int64_t dim, int64_t length,
                                                  int64_t dstate, avssm_dtype input_type, int num_multiprocessors) {
    if (layout != AVSSM_FUSED_CROSS_2D && layout != AVSSM_FUSED_BIDIRECTIONAL) return 0;
    return avssm::carve(layout, batch, dim, length, dstate, input_type).copies +
           avssm_selective_scan_workspace_size(batch, avssm::fused_directions(layout) * dim, length, dstate,
                                               num_multiprocessors);
}

extern "C" cudaError_t avssm_fused_scan_fwd(const avssm_fused_scan_params *params, cudaStream_t stream) {
    if (!avssm::valid_fused(params)) return cudaErrorInvalidValue;
    switch (params->input_type) {
        case AVSSM_FLOAT32: return avssm::run<float>(*params, stream);
        case AVSSM_FLOAT16: return avssm::run<__half>(*params, stream);
        case AVSSM_BFLOAT16: return avssm::run<__nv_bfloat16>(*params, stream);
    }
    return cudaErrorInvalidValue;
}
