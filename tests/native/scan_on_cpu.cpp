// Runs the N = 16 kernels' own source on the CPU through cuda_on_cpu.h, for tests/test_native.py: the channel
// layout (avssm/csrc/cuda/channel_scan_kernel.cuh) with any lanes per channel and split, and the token
// layout (token_scan_kernel.cuh).
//
//   scan_on_cpu DIR LAYOUT BATCH DIM LENGTH GROUPS DTYPE SOFTPLUS
//
// LAYOUT is "tokens" or "channel:LANES:SEGMENTS" (lanes per channel 1/2/4/8; segments per sequence, split as
// avssm_selective_scan_fwd splits them: the first pass over all segments but the last, then the scan).
// DTYPE is an avssm_dtype (0 fp32, 1 fp16, 2 bf16). DIR holds raw arrays in the layout of avssm_scan_params:
// u.bin, delta.bin, B.bin, C.bin in DTYPE, A.bin in fp32, and optionally D.bin, delta_bias.bin (fp32) and
// z.bin (DTYPE). It writes y.bin in DTYPE.
#include "cuda_on_cpu.h"
#include "raw_files.h"

#include "../../avssm/csrc/cuda/channel_scan_kernel.cuh"
#include "../../avssm/csrc/cuda/token_scan_kernel.cuh"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace {

using raw_files::read;

using avssm::KernelArgs;

template <typename input_t>
void run_tokens(const KernelArgs &args) {
    const unsigned blocks = static_cast<unsigned>(args.p.batch * args.p.dim);
    cuda_on_cpu::launch(args.p.z ? avssm::token_scan_kernel<input_t, true> : avssm::token_scan_kernel<input_t, false>,
                        blocks, 1, avssm::kTokenThreads, args);
}

template <typename input_t, int kParts>
void run_channel(const KernelArgs &args) {
    const avssm_scan_params &p = args.p;
    const unsigned warps = static_cast<unsigned>(avssm::channel_warps(p, kParts));
    const unsigned segments = static_cast<unsigned>(args.segments);
    if (segments > 1)
        cuda_on_cpu::launch(avssm::channel_scan_kernel<input_t, 16, kParts, true, false>, warps, segments - 1,
                            avssm::kLanes, args);
    cuda_on_cpu::launch(p.z ? avssm::channel_scan_kernel<input_t, 16, kParts, false, true>
                            : avssm::channel_scan_kernel<input_t, 16, kParts, false, false>,
                        warps, segments, avssm::kLanes, args);
}

template <typename input_t>
void run(const KernelArgs &args, bool tokens, int lanes) {
    if (tokens) return run_tokens<input_t>(args);
    switch (lanes) {
        case 1: return run_channel<input_t, 1>(args);
        case 2: return run_channel<input_t, 2>(args);
        case 4: return run_channel<input_t, 4>(args);
        default: return run_channel<input_t, 8>(args);
    }
}

}  // namespace

int main(int argc, char **argv) {
    int lanes = 0, segments = 1;
    const std::string layout = argc > 2 ? argv[2] : "";
    const bool tokens = layout == "tokens";
    if (argc != 9 || (!tokens && (std::sscanf(layout.c_str(), "channel:%d:%d", &lanes, &segments) != 2 ||
                                  (lanes != 1 && lanes != 2 && lanes != 4 && lanes != 8) || segments < 1))) {
        std::fprintf(stderr, "usage: %s DIR tokens|channel:LANES:SEGMENTS BATCH DIM LENGTH GROUPS DTYPE SOFTPLUS\n",
                     argv[0]);
        return 2;
    }
    const std::string dir = argv[1];
    avssm_scan_params p{};
    p.batch = std::atoll(argv[3]);
    p.dim = std::atoll(argv[4]);
    p.length = std::atoll(argv[5]);
    p.groups = std::atoll(argv[6]);
    p.dstate = 16;
    p.input_type = static_cast<avssm_dtype>(std::atoi(argv[7]));
    p.delta_softplus = std::atoi(argv[8]);
    p.layout = tokens ? AVSSM_LAYOUT_TOKENS : AVSSM_LAYOUT_CHANNEL;
    p.lanes_per_channel = lanes;
    const size_t item = p.input_type == AVSSM_FLOAT32 ? 4 : 2;
    const size_t rows = static_cast<size_t>(p.batch * p.dim * p.length);
    const size_t bc = static_cast<size_t>(p.batch * p.groups * p.dstate * p.length);

    std::vector<char> u = read(dir + "/u.bin", rows * item, false), delta = read(dir + "/delta.bin", rows * item, false),
                      A = read(dir + "/A.bin", p.dim * p.dstate * 4, false), B = read(dir + "/B.bin", bc * item, false),
                      C = read(dir + "/C.bin", bc * item, false), D = read(dir + "/D.bin", p.dim * 4, true),
                      bias = read(dir + "/delta_bias.bin", p.dim * 4, true), z = read(dir + "/z.bin", rows * item, true);
    std::vector<char> y(rows * item);
    auto ptr = [](std::vector<char> &v) -> void * { return v.empty() ? nullptr : v.data(); };
    p.u = ptr(u);
    p.delta = ptr(delta);
    p.A = static_cast<const float *>(ptr(A));
    p.B = ptr(B);
    p.C = ptr(C);
    p.D = static_cast<const float *>(ptr(D));
    p.z = ptr(z);
    p.delta_bias = static_cast<const float *>(ptr(bias));
    p.y = y.data();

    // Segments start on whole tiles, as avssm_selective_scan_fwd places them.
    const int64_t tiles = (p.length + avssm::kTile - 1) / avssm::kTile;
    std::vector<float2> aggregates(static_cast<size_t>(p.batch * p.dim * segments * p.dstate));
    const KernelArgs args{p, segments, (tiles + segments - 1) / segments * avssm::kTile,
                          segments > 1 ? aggregates.data() : nullptr};
    switch (p.input_type) {
        case AVSSM_FLOAT32: run<float>(args, tokens, lanes); break;
        case AVSSM_FLOAT16: run<__half>(args, tokens, lanes); break;
        case AVSSM_BFLOAT16: run<__nv_bfloat16>(args, tokens, lanes); break;
        default: std::fprintf(stderr, "dtype %d is not an avssm_dtype\n", p.input_type); return 2;
    }
    std::ofstream(dir + "/y.bin", std::ios::binary).write(y.data(), static_cast<std::streamsize>(y.size()));
    return 0;
}
