/* The CPU selective scan's forward, one (batch, channel) row at a time, for callers that bring their own
 * threads (ort_selective_scan.c runs rows on ONNX Runtime's thread pool). avssm_scan_cpu_fwd in
 * selective_scan_cpu.c runs every row with OpenMP. Layouts: u, delta, z, y (batch, dim, L); A (dim, N);
 * Bt, Ct (batch, groups, L, N); D, delta_bias (dim); last_state (batch, dim, N) or NULL; fp32, contiguous.
 */
#ifndef AVSSM_SELECTIVE_SCAN_CPU_H
#define AVSSM_SELECTIVE_SCAN_CPU_H

#include <math.h>
#include <stdint.h>

typedef struct {
    const float *u, *delta, *A, *Bt, *Ct, *D, *z, *delta_bias;  /* D, z, delta_bias may be NULL */
    int delta_softplus;
    float *y, *last_state;
    int64_t batch, dim, groups, length, nstate;
} avssm_scan_cpu_args;

#define AVSSM_MAX_STATE 256
#define AVSSM_TILE 64 /* tokens per tile: the element-wise parts vectorize over a tile */

/* One tile of n_t tokens of one channel's scan, the state h (N values) carried in and out: dt_raw and u (n_t
 * each), B and C token-major (n_t x N), A (N); acc[i] = sum_n h C at token i (before D and the gate). The
 * arithmetic every CPU scan here shares, so that their results agree to the bit. */
static inline void avssm_scan_tile(int n_t, const float *dt_raw, const float *u, const float *Bv, const float *Cv,
                                   const float *A_r, int64_t nstate, float bias, int delta_softplus, float *h,
                                   float *acc) {
    float dt[AVSSM_TILE], dtu[AVSSM_TILE], da[AVSSM_TILE];
    for (int i = 0; i < n_t; ++i) {
        float v = dt_raw[i] + bias;
        /* softplus with mamba_ssm's threshold; log(1 + e^v) is 0 where e^v < 2^-24 */
        if (delta_softplus) v = v <= 20.0f ? logf(1.0f + expf(v)) : v;
        dt[i] = v;
        dtu[i] = v * u[i];
    }
    if (nstate == 1) {
        const float a = A_r[0];
        for (int i = 0; i < n_t; ++i) da[i] = expf(dt[i] * a);
        float h0 = h[0];
        for (int i = 0; i < n_t; ++i) {
            h0 = da[i] * h0 + dtu[i] * Bv[i];
            acc[i] = h0 * Cv[i];
        }
        h[0] = h0;
    } else {
        for (int i = 0; i < n_t; ++i) {
            const float *B_i = Bv + i * nstate, *C_i = Cv + i * nstate;
            float s = 0.0f;
            for (int64_t n = 0; n < nstate; ++n) {
                h[n] = expf(dt[i] * A_r[n]) * h[n] + dtu[i] * B_i[n];
                s += h[n] * C_i[n];
            }
            acc[i] = s;
        }
    }
}

/* Non-zero when N is not 1..256 or dim is not a multiple of groups. */
int avssm_scan_cpu_check(const avssm_scan_cpu_args *args);
/* Row `row` (b * dim + d) of y, and of last_state when it is not NULL. */
void avssm_scan_cpu_fwd_row(const avssm_scan_cpu_args *args, int64_t row);

/* Calls row(args, r) for every r in [0, rows) with OpenMP; returns the last non-zero code a row returned (0 if
 * none did). The fused kernels' whole-tensor entry points run their rows through it. */
typedef int (*avssm_cpu_row_fn)(const void *args, int64_t row);
int avssm_cpu_rows(avssm_cpu_row_fn row, const void *args, int64_t rows, int num_threads);

/* VMamba's four-direction scan fused with its cross-scan and cross-merge (cross_scan_cpu.c): u (batch, dim, H, W);
 * delta (batch, 4, dim, H, W); A (4 * dim, N); B, C (batch, 4, N, H, W); D, delta_bias (4 * dim) or NULL;
 * y (batch, dim, H, W) = the sum of the four directions' outputs at each position. fp32, contiguous. */
typedef struct {
    const float *u, *delta, *A, *B, *C, *D, *delta_bias;  /* D, delta_bias may be NULL */
    int delta_softplus;
    float *y;
    int64_t batch, dim, height, width, nstate;
} avssm_cross_scan_cpu_args;

/* Row `row` (b * dim + d) of y. Returns 1 for a bad N, 2 when the row's buffer cannot be allocated. */
int avssm_cross_scan_cpu_row(const avssm_cross_scan_cpu_args *args, int64_t row);
/* Every row, with OpenMP; the same return codes. */
int avssm_cross_scan_cpu_fwd(const float *u, const float *delta, const float *A, const float *B, const float *C,
                             const float *D, const float *delta_bias, int delta_softplus, float *y, int64_t batch,
                             int64_t dim, int64_t height, int64_t width, int64_t nstate, int num_threads);

/* Vim's two directions in one call (bidirectional_scan_cpu.c): u, delta (batch, 2 * dim, L), channels dim + d
 * walked backwards; A (2 * dim, N); Bs, Cs (batch, 2, L, N) in each direction's step order (direction 1's step
 * t is position L - 1 - t: avssm_bidir_steps); D, delta_bias (2 * dim) or NULL; z (batch, dim, L) or NULL, the
 * gate of both directions at each position; y (batch, dim, L) = the two outputs averaged. */
typedef struct {
    const float *u, *delta, *A, *Bs, *Cs, *D, *z, *delta_bias;  /* D, z, delta_bias may be NULL */
    int delta_softplus;
    float *y;
    int64_t batch, dim, length, nstate;
} avssm_bidir_scan_cpu_args;

/* Token-major Bt (batch, 2, L, N) in sequence order -> a new (batch, 2, L, N) array in each direction's step
 * order, for the caller to free; NULL when it cannot be allocated. */
float *avssm_bidir_steps(const float *Bt, int64_t batch, int64_t length, int64_t nstate);
/* Row `row` (b * dim + d) of y. Returns 1 for a bad N. */
int avssm_bidir_scan_cpu_row(const avssm_bidir_scan_cpu_args *args, int64_t row);
/* Every row, with OpenMP, from Bt and Ct in sequence order; 1 for a bad N, 2 when out of memory. */
int avssm_bidir_scan_cpu_fwd(const float *u, const float *delta, const float *A, const float *Bt, const float *Ct,
                             const float *D, const float *z, const float *delta_bias, int delta_softplus, float *y,
                             int64_t batch, int64_t dim, int64_t length, int64_t nstate, int num_threads);

#endif
