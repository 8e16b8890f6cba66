/* VMamba's four-direction selective scan on the CPU with its cross-scan and cross-merge fused in: the scan reads
 * u, delta, B and C where they lie in the (H, W) map and walks each direction's order by index (row-major,
 * column-major, and both reversed), and each position's four outputs are summed in place, so no traversal copy
 * and no per-direction output exists. Per (batch, channel) row: the four directions one after another, the
 * state in registers, the tile arithmetic shared with selective_scan_cpu.c (avssm_scan_tile). The
 * specification is cross_selective_scan_ref in avssm/ops/cross_scan.py.
 */
#include <stdlib.h>
#include <string.h>

#include "selective_scan_cpu.h"

/* The position (row-major index in the map) that direction k visits at step t. */
static inline int64_t position(int k, int64_t t, int64_t height, int64_t width) {
    const int64_t length = height * width;
    const int64_t s = k >= 2 ? length - 1 - t : t;  /* directions 2 and 3 walk 0 and 1 backwards */
    return (k & 1) ? (s % height) * width + s / height : s;  /* 1 and 3: column-major, down the columns */
}

int avssm_cross_scan_cpu_row(const avssm_cross_scan_cpu_args *a, int64_t row) {
    const int64_t nstate = a->nstate, dim = a->dim, height = a->height, width = a->width;
    if (nstate < 1 || nstate > AVSSM_MAX_STATE) return 1;
    const int64_t length = height * width, b = row / dim, d = row % dim;
    const float *u_r = a->u + row * length;
    /* rows + columns, summed as VMamba's cross-merge sums them: (y0 + y2) + (y1 + y3) */
    float *sums = calloc((size_t)(2 * length), sizeof(float));
    if (!sums) return 2;
    float h[AVSSM_MAX_STATE], acc[AVSSM_TILE], u_t[AVSSM_TILE], dt_t[AVSSM_TILE];
    float B_t[AVSSM_TILE * AVSSM_MAX_STATE], C_t[AVSSM_TILE * AVSSM_MAX_STATE];
    int64_t p_t[AVSSM_TILE];
    for (int k = 0; k < 4; ++k) {
        const int64_t channel = k * dim + d;
        const float *dt_r = a->delta + ((b * 4 + k) * dim + d) * length;
        const float *B_k = a->B + (b * 4 + k) * nstate * length, *C_k = a->C + (b * 4 + k) * nstate * length;
        const float bias = a->delta_bias ? a->delta_bias[channel] : 0.0f, skip = a->D ? a->D[channel] : 0.0f;
        float *sum = sums + (k & 1) * length;
        memset(h, 0, sizeof(float) * (size_t)nstate);
        for (int64_t t0 = 0; t0 < length; t0 += AVSSM_TILE) {
            const int n_t = (int)(length - t0 < AVSSM_TILE ? length - t0 : AVSSM_TILE);
            for (int i = 0; i < n_t; ++i) {
                const int64_t p = position(k, t0 + i, height, width);
                p_t[i] = p;
                u_t[i] = u_r[p];
                dt_t[i] = dt_r[p];
                for (int64_t n = 0; n < nstate; ++n) {
                    B_t[i * nstate + n] = B_k[n * length + p];
                    C_t[i * nstate + n] = C_k[n * length + p];
                }
            }
            avssm_scan_tile(n_t, dt_t, u_t, B_t, C_t, a->A + channel * nstate, nstate, bias, a->delta_softplus, h,
                            acc);
            for (int i = 0; i < n_t; ++i) sum[p_t[i]] += acc[i] + skip * u_t[i];
        }
    }
    float *y_r = a->y + row * length;
    for (int64_t p = 0; p < length; ++p) y_r[p] = sums[p] + sums[length + p];
    free(sums);
    return 0;
}

static int row_of(const void *args, int64_t row) { return avssm_cross_scan_cpu_row(args, row); }

int avssm_cross_scan_cpu_fwd(const float *u, const float *delta, const float *A, const float *B, const float *C,
                             const float *D, const float *delta_bias, int delta_softplus, float *y, int64_t batch,
                             int64_t dim, int64_t height, int64_t width, int64_t nstate, int num_threads) {
    if (nstate < 1 || nstate > AVSSM_MAX_STATE) return 1;
    const avssm_cross_scan_cpu_args args = {u, delta, A, B, C, D, delta_bias, delta_softplus, y,
                                            batch, dim, height, width, nstate};
    return avssm_cpu_rows(row_of, &args, batch * dim, num_threads);
}
