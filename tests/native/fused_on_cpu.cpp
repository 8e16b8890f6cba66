// avssm_fused_scan_fwd as host_scan.cpp runs it: fused_plan's copies and merge from the CUDA kernels' own source
// (avssm/csrc/cuda/fused_scan.cuh) on the CPU, the plain scan in loops. For tests/test_native.py, which compares y
// with the definitions in avssm/ops/cross_scan.py and bidirectional_scan.py.
//
//   fused_on_cpu DIR LAYOUT BATCH DIM HEIGHT WIDTH N DTYPE SOFTPLUS
//
// LAYOUT 1 (cross-2d) or 2 (bidirectional, HEIGHT 1); DTYPE an avssm_dtype. DIR holds u.bin, delta.bin, B.bin,
// C.bin in DTYPE and A.bin in fp32 in the shapes of avssm_fused_scan_params, and optionally D.bin, delta_bias.bin
// (fp32) and z.bin (DTYPE). It writes y.bin in DTYPE.
#include "avssm/selective_scan.h"

#include "raw_files.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

using raw_files::read;

int main(int argc, char** argv) {
    if (argc != 10) {
        std::fprintf(stderr, "usage: %s DIR LAYOUT BATCH DIM HEIGHT WIDTH N DTYPE SOFTPLUS\n", argv[0]);
        return 2;
    }
    std::string const dir = argv[1];
    avssm_fused_scan_params p{};
    p.layout = std::atoi(argv[2]);
    p.batch = std::atoll(argv[3]);
    p.dim = std::atoll(argv[4]);
    p.height = std::atoll(argv[5]);
    p.width = std::atoll(argv[6]);
    p.dstate = std::atoll(argv[7]);
    p.input_type = static_cast<avssm_dtype>(std::atoi(argv[8]));
    p.delta_softplus = std::atoi(argv[9]);
    size_t const e = p.input_type == AVSSM_FLOAT32 ? 4 : 2;
    int64_t const k = p.layout == AVSSM_FUSED_CROSS_2D ? 4 : 2, L = p.height * p.width;
    size_t const seq = static_cast<size_t>(p.batch * k * p.dim * L), state = static_cast<size_t>(p.batch * k * p.dstate * L);
    size_t const u_elems = p.layout == AVSSM_FUSED_CROSS_2D ? seq / 4 : seq;
    std::vector<char> u = read(dir + "/u.bin", u_elems * e, false), delta = read(dir + "/delta.bin", seq * e, false);
    std::vector<char> B = read(dir + "/B.bin", state * e, false), C = read(dir + "/C.bin", state * e, false);
    std::vector<char> A = read(dir + "/A.bin", static_cast<size_t>(k * p.dim * p.dstate) * 4, false);
    std::vector<char> D = read(dir + "/D.bin", static_cast<size_t>(k * p.dim) * 4, true);
    std::vector<char> bias = read(dir + "/delta_bias.bin", static_cast<size_t>(k * p.dim) * 4, true);
    std::vector<char> z = read(dir + "/z.bin", static_cast<size_t>(p.batch * p.dim * L) * e, true);
    std::vector<char> y(static_cast<size_t>(p.batch * p.dim * L) * e);
    std::vector<char> workspace(avssm_fused_scan_workspace_size(p.layout, p.batch, p.dim, L, p.dstate, p.input_type, 1));
    p.u = u.data();
    p.delta = delta.data();
    p.A = reinterpret_cast<float const*>(A.data());
    p.B = B.data();
    p.C = C.data();
    p.D = D.empty() ? nullptr : reinterpret_cast<float const*>(D.data());
    p.delta_bias = bias.empty() ? nullptr : reinterpret_cast<float const*>(bias.data());
    p.z = z.empty() ? nullptr : z.data();
    p.y = y.data();
    p.workspace = workspace.data();
    p.workspace_bytes = workspace.size();
    cudaError_t const err = avssm_fused_scan_fwd(&p, nullptr);
    if (err != cudaSuccess) {
        std::fprintf(stderr, "avssm_fused_scan_fwd: %d\n", static_cast<int>(err));
        return 1;
    }
    std::ofstream(dir + "/y.bin", std::ios::binary).write(y.data(), static_cast<std::streamsize>(y.size()));
    return 0;
}
