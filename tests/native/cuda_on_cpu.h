// Runs a CUDA kernel's own source on the CPU, one std::thread per CUDA thread and one block at a time, so
// tests on machines without a GPU can check a kernel's indexing, its block-wide scan and its results.
// It says nothing about speed, and little about memory ordering on a GPU: barriers here order everything.
//
// What it provides is what avssm's channel- and token-layout kernels use (plugins/selective_scan/
// channel_scan_kernel.cuh, token_scan_kernel.cuh): threadIdx (x), blockIdx (x, y), __syncthreads,
// __shfl_up_sync, __shfl_sync, __shfl_xor_sync, __syncwarp, __fdividef, __launch_bounds__, and __shared__
// variables (function statics: one block runs at a time). CUDA's vector and half-precision types come from CUDA's headers, which compile as host code.
// Every thread of a block must reach every barrier and shuffle, as the kernels here do (whole warps, no
// early return).
#pragma once

#include <cuda_runtime_api.h>
#include <vector_functions.h>

#include <atomic>
#include <barrier>
#include <memory>
#include <thread>
#include <vector>

#undef __shared__
#define __shared__ static
#define __launch_bounds__(...)

namespace cuda_on_cpu {

struct Warp {
    std::barrier<> sync{32};
    float slot[32];
};

struct Block {
    explicit Block(unsigned threads) : threads(threads), sync(threads), warps(new Warp[threads / 32]) {}
    unsigned threads;
    std::barrier<> sync;
    std::unique_ptr<Warp[]> warps;
    std::atomic<unsigned> arrivals{0};  // barriers reached and threads ended, by all threads together

    void arrive() {
        arrivals.fetch_add(1);
        arrivals.notify_all();
    }
};

inline thread_local uint3 thread_index, block_index;
inline thread_local Block *current_block = nullptr;
inline thread_local unsigned barriers_passed = 0;

// A barrier in the most adversarial order for shared memory: after barrier k, the warps w with w + k even run
// on to their next barrier (or their end) before the others leave this one, so a slot that one warp writes
// again before another has read it gives a wrong result every run, not only by chance.
inline void block_barrier() {
    Block &block = *current_block;
    block.arrive();
    block.sync.arrive_and_wait();
    const unsigned k = barriers_passed++;
    if ((thread_index.x / 32 + k) % 2 == 0) return;
    const unsigned warps = block.threads / 32, leading_warps = (warps + 1 - k % 2) / 2;
    const unsigned target = (k + 1) * block.threads + 32 * leading_warps;
    for (unsigned seen = block.arrivals.load(); seen < target; seen = block.arrivals.load())
        block.arrivals.wait(seen);
}

inline Warp &warp() { return current_block->warps[thread_index.x / 32]; }

// Every lane publishes v, then reads lane source(lane) (its own value when that is outside the warp).
template <typename Source>
float exchange(float v, Source source) {
    Warp &w = warp();
    const int lane = static_cast<int>(thread_index.x % 32);
    w.slot[lane] = v;
    w.sync.arrive_and_wait();
    const int from = source(lane);
    const float r = from >= 0 && from < 32 ? w.slot[from] : v;
    w.sync.arrive_and_wait();  // nobody overwrites a slot before every lane has read
    return r;
}

// kernel(args...) on a grid of blocks_x x blocks_y blocks of `threads` threads (a multiple of 32), one block
// after another.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), unsigned blocks_x, unsigned blocks_y, unsigned threads, Args &&...args) {
    for (unsigned b = 0; b < blocks_x * blocks_y; ++b) {
        Block block(threads);
        std::vector<std::thread> pool;
        for (unsigned t = 0; t < threads; ++t)
            pool.emplace_back([&, t] {
                block_index = make_uint3(b % blocks_x, b / blocks_x, 0);
                thread_index = make_uint3(t, 0, 0);
                current_block = &block;
                barriers_passed = 0;
                kernel(args...);
                block.arrive();
            });
        for (std::thread &thread : pool) thread.join();
    }
}

}  // namespace cuda_on_cpu

#define threadIdx (cuda_on_cpu::thread_index)
#define blockIdx (cuda_on_cpu::block_index)

inline void __syncthreads() { cuda_on_cpu::block_barrier(); }
inline void __syncwarp(unsigned = 0xffffffffu) { cuda_on_cpu::warp().sync.arrive_and_wait(); }
inline float __shfl_up_sync(unsigned, float v, unsigned delta, int = 32) {
    return cuda_on_cpu::exchange(v, [delta](int lane) { return lane - static_cast<int>(delta); });
}
inline float __shfl_sync(unsigned, float v, int source, int = 32) {
    return cuda_on_cpu::exchange(v, [source](int) { return source; });
}
inline float __shfl_xor_sync(unsigned, float v, int mask, int = 32) {
    return cuda_on_cpu::exchange(v, [mask](int lane) { return lane ^ mask; });
}
inline float __fdividef(float a, float b) { return a / b; }
