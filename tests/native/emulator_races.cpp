// Checks the CPU emulator itself (cuda_on_cpu.h): two tiny kernels that pass values through shared memory in
// a loop, once with one buffer (a race: a fast warp or lane rewrites the slot before a slow one has read it)
// and once with two (correct with one barrier per round). Every thread waits a while between its reads and its
// next write, so threads released together would always read first and hide the race; the emulator must get
// the one-buffer runs wrong every time, or its runs of the scan kernels (scan_on_cpu.cpp) would catch such
// races only by chance.
//
// Prints one line per run: "<block|warp> <buffers> <right|wrong>".
#include "cuda_on_cpu.h"

#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

namespace {

constexpr int kRounds = 8;

void work_a_while() { std::this_thread::sleep_for(std::chrono::milliseconds(1)); }

// 4 warps; each round lane 0 of every warp posts a value, then every thread adds up all four.
__global__ void block_rounds(int buffers, std::vector<float> *sums) {
    __shared__ float slot[2][4];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float sum = 0.f;
    for (int round = 0; round < kRounds; ++round) {
        if (lane == 0) slot[round % buffers][warp] = static_cast<float>(round * 4 + warp + 1);
        __syncthreads();
        for (int w = 0; w < 4; ++w) sum += slot[round % buffers][w];
        work_a_while();
    }
    (*sums)[threadIdx.x] = sum;
}

// One warp; each round every lane posts a value, then reads its neighbour's.
__global__ void warp_rounds(int buffers, std::vector<float> *sums) {
    __shared__ float slot[2][32];
    const int lane = threadIdx.x % 32;
    float sum = 0.f;
    for (int round = 0; round < kRounds; ++round) {
        slot[round % buffers][lane] = static_cast<float>(round * 32 + lane + 1);
        __syncwarp();
        sum += slot[round % buffers][(lane + 1) % 32];
        work_a_while();
    }
    (*sums)[threadIdx.x] = sum;
}

bool block_right(int buffers) {
    std::vector<float> sums(128);
    cuda_on_cpu::launch(block_rounds, 1, 1, 128, buffers, &sums);
    float expected = 0.f;
    for (int round = 0; round < kRounds; ++round)
        for (int w = 0; w < 4; ++w) expected += static_cast<float>(round * 4 + w + 1);
    for (float s : sums)
        if (s != expected) return false;
    return true;
}

bool warp_right(int buffers) {
    std::vector<float> sums(32);
    cuda_on_cpu::launch(warp_rounds, 1, 1, 32, buffers, &sums);
    for (int lane = 0; lane < 32; ++lane) {
        float expected = 0.f;
        for (int round = 0; round < kRounds; ++round) expected += static_cast<float>(round * 32 + (lane + 1) % 32 + 1);
        if (sums[lane] != expected) return false;
    }
    return true;
}

}  // namespace

int main() {
    for (int buffers : {1, 2}) std::printf("block %d %s\n", buffers, block_right(buffers) ? "right" : "wrong");
    for (int buffers : {1, 2}) std::printf("warp %d %s\n", buffers, warp_right(buffers) ? "right" : "wrong");
    return 0;
}
