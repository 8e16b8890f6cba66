// Runs a CUDA kernel's own source on the CPU, one std::thread per CUDA thread and one block at a time, so
// tests on machines without a GPU can check a kernel's indexing, its block-wide scan and its results.
// It says nothing about speed, and little about memory ordering on a GPU: barriers here order everything.
// __syncthreads and __syncwarp release threads in an adversarial order (let_half_run_ahead), so in a loop a
// missing barrier or a shared slot reused too early shows up in every run, not only by chance.
//
// What it provides is what avssm's channel- and token-layout kernels use (avssm/csrc/cuda/
// channel_scan_kernel.cuh, token_scan_kernel.cuh): threadIdx (x), blockIdx (x, y), __syncthreads,
// __shfl_up_sync, __shfl_sync, __shfl_xor_sync, __syncwarp, __fdividef, __launch_bounds__, and __shared__
// variables (function statics: one block runs at a time). CUDA's vector and half-precision types come from
// CUDA's headers, which compile as host code.
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

// Threads that wait for one another (a warp, a block), and how many sync points they have reached (or their
// end) so far, all together: what the adversarial order below waits on.
struct Group {
    explicit Group(unsigned size) : size(size), sync(size) {}
    unsigned size;
    std::barrier<> sync;
    std::atomic<unsigned> arrivals{0};

    void arrive() {
        arrivals.fetch_add(1);
        arrivals.notify_all();
    }
    void arrive_and_wait() {  // a sync point: counted, then every thread of the group
        arrive();
        sync.arrive_and_wait();
    }
    void wait_for_arrivals(unsigned target) {
        for (unsigned seen = arrivals.load(); seen < target; seen = arrivals.load()) arrivals.wait(seen);
    }
};

struct Warp {
    Group group{32};
    float slot[32];
};

struct Block {
    explicit Block(unsigned threads) : group(threads), warps(new Warp[threads / 32]) {}
    Group group;
    std::unique_ptr<Warp[]> warps;
};

inline thread_local uint3 thread_index, block_index;
inline thread_local Block *current_block = nullptr;
inline thread_local unsigned block_syncs = 0, warp_syncs = 0;  // sync points this thread has passed

inline Warp &warp() { return current_block->warps[thread_index.x / 32]; }

// An adversarial order for shared memory: after sync point k of a group of `units` units (the warps of a
// block, the lanes of a warp), one half of them runs on to its next sync point (or its end) before the other
// half leaves this one. The halves split on one bit of the unit's index, the next bit at the next sync point,
// and after each round of bits the other half goes first, so any two units run in both orders within
// 2 x log2(units) sync points: in a loop, a shared slot rewritten too early, or a missing barrier, gives a wrong
// result in every run.
inline void let_half_run_ahead(Group &group, unsigned unit, unsigned units, unsigned k) {
    unsigned bits = 0;
    while ((1u << bits) < units) ++bits;
    if (bits == 0) return;
    const unsigned bit = k % bits, leading_bit = (k / bits) % 2;
    if (((unit >> bit) & 1u) == leading_bit) return;
    unsigned leading = 0;
    for (unsigned u = 0; u < units; ++u) leading += ((u >> bit) & 1u) == leading_bit;
    group.wait_for_arrivals((k + 1) * group.size + leading * (group.size / units));
}

// One sync point of the warp without the adversarial order (the shuffles' own barriers).
inline void warp_wait() {
    warp().group.arrive_and_wait();
    ++warp_syncs;
}

// Every lane publishes v, then reads lane source(lane) (its own value when that is outside the warp).
template <typename Source>
float exchange(float v, Source source) {
    Warp &w = warp();
    const int lane = static_cast<int>(thread_index.x % 32);
    w.slot[lane] = v;
    warp_wait();
    const int from = source(lane);
    const float r = from >= 0 && from < 32 ? w.slot[from] : v;
    warp_wait();  // nobody overwrites a slot before every lane has read
    return r;
}

inline void sync_block() {
    Block &block = *current_block;
    warp().group.arrive();  // a block barrier is a sync point of the warp too
    ++warp_syncs;
    block.group.arrive_and_wait();
    let_half_run_ahead(block.group, thread_index.x / 32, block.group.size / 32, block_syncs++);
}

inline void sync_warp() {
    Group &group = warp().group;
    group.arrive_and_wait();
    let_half_run_ahead(group, thread_index.x % 32, 32, warp_syncs++);
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
                block_syncs = warp_syncs = 0;
                kernel(args...);
                block.group.arrive();  // the thread's end counts as its next sync point
                warp().group.arrive();
            });
        for (std::thread &thread : pool) thread.join();
    }
}

}  // namespace cuda_on_cpu

#define threadIdx (cuda_on_cpu::thread_index)
#define blockIdx (cuda_on_cpu::block_index)

inline void __syncthreads() { cuda_on_cpu::sync_block(); }
inline void __syncwarp(unsigned = 0xffffffffu) { cuda_on_cpu::sync_warp(); }
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
