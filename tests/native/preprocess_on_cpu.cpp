// Runs avssm_infer's preprocessing kernel (avssm/csrc/infer/preprocess.cuh) from its CUDA source on the CPU
// through cuda_on_cpu.h, with the table avssm_infer builds (preprocess.cpp), for tests/test_infer.py.
//
//   preprocess_on_cpu FRAME WIDTH HEIGHT STRIDE FORMAT HALF OUT_WIDTH OUT_HEIGHT RGB SCALE M0 M1 M2 S0 S1 S2 OUT
//
// FRAME: raw rows of STRIDE bytes (NV12: the Y rows, then the UV rows); FORMAT an avssm_pixel_format; HALF 1 for fp16 output; RGB 1 when the model
// takes RGB. Writes OUT: (3, OUT_HEIGHT, OUT_WIDTH) fp32 or fp16.
#include "cuda_on_cpu.h"

#include "../../avssm/csrc/infer/preprocess.cuh"
#include "../../avssm/csrc/infer/preprocess.hpp"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <vector>

int main(int argc, char** argv) {
    if (argc != 18) {
        std::fprintf(stderr, "usage: %s FRAME WIDTH HEIGHT STRIDE FORMAT HALF OUT_WIDTH OUT_HEIGHT RGB SCALE M0 M1 M2 "
                             "S0 S1 S2 OUT\n", argv[0]);
        return 2;
    }
    std::ifstream in(argv[1], std::ios::binary);
    std::vector<uint8_t> frame((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    avssm::infer::Normalization n;
    n.rgb = std::atoi(argv[9]) != 0;
    n.scale = std::strtof(argv[10], nullptr);
    for (int c = 0; c < 3; ++c) {
        n.mean[c] = std::strtof(argv[11 + c], nullptr);
        n.std[c] = std::strtof(argv[14 + c], nullptr);
    }
    bool const half = std::atoi(argv[6]) != 0;
    std::vector<float> const table = avssm::infer::normalizationTable(n);
    std::vector<uint16_t> const halfTable = avssm::infer::toHalf(table);
    auto const layout = avssm::infer::pixelLayout(static_cast<avssm_pixel_format>(std::atoi(argv[5])), n.rgb);

    avssm::infer::PreprocessArgs args{};
    args.frame = frame.data();
    args.width = std::atoi(argv[2]);
    args.height = std::atoi(argv[3]);
    args.stride = std::atoll(argv[4]);
    args.bytesPerPixel = layout.bytesPerPixel;
    for (int c = 0; c < 3; ++c) args.source[c] = layout.source[c];
    args.nv12 = layout.nv12;
    args.outWidth = std::atoi(argv[7]);
    args.outHeight = std::atoi(argv[8]);
    size_t const count = 3 * static_cast<size_t>(args.outWidth) * args.outHeight;
    std::vector<uint8_t> out(count * (half ? 2 : 4), 0xAB);  // not zero: padding must be written
    args.input = out.data();
    unsigned const blocks = static_cast<unsigned>((args.outWidth + avssm::infer::kPreprocessThreads - 1) /
                                                  avssm::infer::kPreprocessThreads);
    if (half) {
        args.table = halfTable.data();
        cuda_on_cpu::launch(avssm::infer::preprocess_kernel<uint16_t>, blocks, static_cast<unsigned>(args.outHeight),
                            avssm::infer::kPreprocessThreads, args);
    } else {
        args.table = table.data();
        cuda_on_cpu::launch(avssm::infer::preprocess_kernel<float>, blocks, static_cast<unsigned>(args.outHeight),
                            avssm::infer::kPreprocessThreads, args);
    }
    std::ofstream(argv[17], std::ios::binary).write(reinterpret_cast<char const*>(out.data()),
                                                   static_cast<std::streamsize>(out.size()));
    return 0;
}
