// The kernel library's C API (avssm/csrc/include/avssm/selective_scan.h) over host memory: linked into a host
// build of the TensorRT plugin (tests/test_native.py), so that the plugin's enqueue, which has no GPU here, hands
// the scan the right tensors, shapes and flags; plugin_gpu_check --host-memory compares the result with its own
// reference. The plain scan is plain loops here; it stands in for the CUDA scan kernels and says nothing about
// them or about TensorRT. The fused layouts run as avssm_fused_scan_fwd does on a GPU (fused_plan), their
// traversal and merge kernels from their own source through tests/native/cuda_on_cpu.h.
#include "avssm/selective_scan.h"

#include "cuda_on_cpu.h"

#include "../../avssm/csrc/cuda/fused_scan.cuh"

#include <cmath>
#include <cstring>
#include <vector>

namespace {

float load(void const* data, avssm_dtype type, int64_t i) {
    if (type == AVSSM_FLOAT32) return static_cast<float const*>(data)[i];
    uint16_t const h = static_cast<uint16_t const*>(data)[i];
    uint32_t x;
    if (type == AVSSM_BFLOAT16) {
        x = static_cast<uint32_t>(h) << 16;
    } else {  // fp16, normal or zero (the test data)
        uint32_t const e = (h >> 10) & 0x1f;
        x = (static_cast<uint32_t>(h & 0x8000) << 16) | (e ? ((e - 15 + 127) << 23) | ((h & 0x3ffu) << 13) : 0);
    }
    float f;
    std::memcpy(&f, &x, 4);
    return f;
}

void store(void* data, avssm_dtype type, int64_t i, float f) {
    if (type == AVSSM_FLOAT32) {
        static_cast<float*>(data)[i] = f;
        return;
    }
    uint32_t x;
    std::memcpy(&x, &f, 4);
    uint16_t h;
    if (type == AVSSM_BFLOAT16) {
        h = static_cast<uint16_t>((x + 0x7fff + ((x >> 16) & 1)) >> 16);
    } else {
        int32_t const e = static_cast<int32_t>((x >> 23) & 0xff) - 127 + 15;
        uint32_t const sign = (x >> 16) & 0x8000u;
        uint32_t const rounded = (x & 0x7fffffu) + 0x1000u;  // to nearest
        h = static_cast<uint16_t>(e <= 0 ? sign : e >= 31 ? sign | 0x7c00u
                                                          : sign + ((static_cast<uint32_t>(e) << 10) + (rounded >> 13)));
    }
    static_cast<uint16_t*>(data)[i] = h;
}

}  // namespace

namespace {

// avssm_fused_scan_fwd's steps (fused_scan.cu) on a grid of two blocks: the kernels loop over their elements.
template <typename T>
cudaError_t run_fused(avssm_fused_scan_params const& p, cudaStream_t stream) {
    avssm::FusedPlan const plan = avssm::fused_plan(p);
    int const k = avssm::fused_directions(p.layout);
    int64_t const L = plan.tr.length(), grid = 2 * avssm::kFusedThreads;
    for (int i = 0; i < plan.count; ++i) {
        avssm::Copy const& c = plan.copies[i];
        cuda_on_cpu::launch(avssm::traverse_kernel<T>, 2, 1, avssm::kFusedThreads, static_cast<T const*>(c.src),
                            static_cast<T*>(c.dst), plan.tr, k, c.channels, c.src_batch, c.src_direction,
                            p.batch * k * c.channels * L, grid);
    }
    cudaError_t const err = avssm_selective_scan_fwd(&plan.scan, stream);
    if (err != cudaSuccess) return err;
    cuda_on_cpu::launch(avssm::merge_kernel<T>, 2, 1, avssm::kFusedThreads, static_cast<T const*>(plan.scan.y),
                        static_cast<T*>(p.y), plan.tr, p.dim, p.batch * p.dim * L, grid);
    return cudaSuccess;
}

}  // namespace

extern "C" {

// The plain loops need no workspace, but the CUDA kernel's grows with the multiprocessors it is sized for, and
// enqueue must hand it no more than getWorkspaceSize announced: here the size grows the same way, and the scan
// writes every byte it is told it has, so a plugin that passes more than TensorRT allocated writes past the
// buffer (plugin_gpu_check --host-memory guards the bytes after it).
size_t avssm_selective_scan_workspace_size(int64_t batch, int64_t dim, int64_t, int64_t dstate,
                                           int num_multiprocessors) {
    return static_cast<size_t>(batch * dim + 64 * (num_multiprocessors > 0 ? num_multiprocessors : 1)) *
           static_cast<size_t>(dstate) * 8;
}

cudaError_t avssm_selective_scan_fwd(avssm_scan_params const* p, cudaStream_t) {
    if (!p || !p->u || !p->delta || !p->A || !p->B || !p->C || !p->y || p->groups < 1 || p->dim % p->groups ||
        p->dstate < 1 || p->dstate > 256) {
        return cudaErrorInvalidValue;
    }
    if (p->workspace != nullptr) std::memset(p->workspace, 0x2a, p->workspace_bytes);
    std::vector<float> h(static_cast<size_t>(p->dstate));
    int64_t const L = p->length, N = p->dstate, perGroup = p->dim / p->groups;
    for (int64_t b = 0; b < p->batch; ++b) {
        for (int64_t d = 0; d < p->dim; ++d) {
            int64_t const g = d / perGroup, row = (b * p->dim + d) * L;
            std::fill(h.begin(), h.end(), 0.f);
            for (int64_t t = 0; t < L; ++t) {
                float dt = load(p->delta, p->input_type, row + t) + (p->delta_bias ? p->delta_bias[d] : 0.f);
                if (p->delta_softplus) dt = dt <= 20.f ? std::log1p(std::exp(dt)) : dt;
                float const u = load(p->u, p->input_type, row + t);
                float y = 0.f;
                for (int64_t n = 0; n < N; ++n) {
                    int64_t const bc = ((b * p->groups + g) * N + n) * L + t;
                    h[n] = std::exp(dt * p->A[d * N + n]) * h[n] + dt * load(p->B, p->input_type, bc) * u;
                    y += h[n] * load(p->C, p->input_type, bc);
                }
                if (p->D) y += p->D[d] * u;
                if (p->z) {
                    float const z = load(p->z, p->input_type, row + t);
                    y *= z / (1.f + std::exp(-z));
                }
                store(p->y, p->input_type, row + t, y);
            }
        }
    }
    return cudaSuccess;
}

cudaError_t avssm_selective_scan_plan(avssm_scan_params const*, int, int* lanes, int* segments) {
    *lanes = *segments = 1;
    return cudaSuccess;
}

size_t avssm_fused_scan_workspace_size(int layout, int64_t batch, int64_t dim, int64_t length, int64_t dstate,
                                       avssm_dtype input_type, int num_multiprocessors) {
    if (layout != AVSSM_FUSED_CROSS_2D && layout != AVSSM_FUSED_BIDIRECTIONAL) return 0;
    return avssm::carve(layout, batch, dim, length, dstate, input_type).copies +  // as fused_scan.cu sizes it
           avssm_selective_scan_workspace_size(batch, avssm::fused_directions(layout) * dim, length, dstate,
                                               num_multiprocessors);
}

cudaError_t avssm_fused_scan_fwd(avssm_fused_scan_params const* params, cudaStream_t stream) {
    if (!avssm::valid_fused(params)) return cudaErrorInvalidValue;
    avssm_fused_scan_params const& p = *params;
    switch (p.input_type) {
        case AVSSM_FLOAT32: return run_fused<float>(p, stream);
        case AVSSM_FLOAT16: return run_fused<__half>(p, stream);
        case AVSSM_BFLOAT16: return run_fused<__nv_bfloat16>(p, stream);
    }
    return cudaErrorInvalidValue;
}

int avssm_current_multiprocessors(void) { return 1; }

char const* avssm_cuda_error_string(cudaError_t error) { return error == cudaSuccess ? "no error" : "invalid value"; }

int avssm_selective_scan_api_version(void) { return AVSSM_SCAN_API_VERSION; }

}
