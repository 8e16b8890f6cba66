/* Vim's two scan directions in one call on the CPU, without flipped copies: channel d of direction 0 walks its
 * sequence forwards and channel dim + d of direction 1 walks it backwards, both reading their inputs where they
 * lie, each gated by SiLU(z) at its position, and the two outputs averaged at each position as Vim combines
 * them. Per (batch, channel) row, the tile arithmetic shared with selective_scan_cpu.c (avssm_scan_tile), B and C
 * read in each direction's step order (avssm_bidir_steps reverses direction 1's once per call). The
 * specification is bidirectional_selective_scan_ref in avssm/ops/bidirectional_scan.py.
 */
#include <stdlib.h>
#include <string.h>

#include "selective_scan_cpu.h"

float *avssm_bidir_steps(const float *Bt, int64_t batch, int64_t length, int64_t nstate) {
    const size_t plane = (size_t)(length * nstate);
    float *steps = malloc(sizeof(float) * plane * 2 * (size_t)batch);
    if (!steps) return NULL;
    for (int64_t b = 0; b < batch; ++b) {
        memcpy(steps + (b * 2) * plane, Bt + (b * 2) * plane, sizeof(float) * plane);
        const float *from = Bt + (b * 2 + 1) * plane;
        float *to = steps + (b * 2 + 1) * plane;
        for (int64_t t = 0; t < length; ++t)
            memcpy(to + t * nstate, from + (length - 1 - t) * nstate, sizeof(float) * (size_t)nstate);
    }
    return steps;
}

int avssm_bidir_scan_cpu_row(const avssm_bidir_scan_cpu_args *a, int64_t row) {
    const int64_t nstate = a->nstate, dim = a->dim, length = a->length;
    if (nstate < 1 || nstate > AVSSM_MAX_STATE) return 1;
    const int64_t b = row / dim, d = row % dim;
    float *y_r = a->y + row * length;
    float h[AVSSM_MAX_STATE], acc[AVSSM_TILE], u_t[AVSSM_TILE], dt_t[AVSSM_TILE];
    const float *z_r = a->z ? a->z + row * length : NULL;
    for (int k = 0; k < 2; ++k) {
        const int64_t channel = k * dim + d;
        const float *u_r = a->u + (b * 2 * dim + channel) * length;
        const float *dt_r = a->delta + (b * 2 * dim + channel) * length;
        /* B and C in the direction's step order: read where they lie, as the sequence kernel reads them */
        const float *B_r = a->Bs + (b * 2 + k) * length * nstate, *C_r = a->Cs + (b * 2 + k) * length * nstate;
        const float bias = a->delta_bias ? a->delta_bias[channel] : 0.0f, skip = a->D ? a->D[channel] : 0.0f;
        memset(h, 0, sizeof(float) * (size_t)nstate);
        for (int64_t t0 = 0; t0 < length; t0 += AVSSM_TILE) {
            const int n_t = (int)(length - t0 < AVSSM_TILE ? length - t0 : AVSSM_TILE);
            const float *u_s = u_r + t0, *dt_s = dt_r + t0;
            if (k == 1) {  /* step t0 + i of the backward direction is position length - 1 - (t0 + i) */
                for (int i = 0; i < n_t; ++i) u_t[i] = u_r[length - 1 - (t0 + i)], dt_t[i] = dt_r[length - 1 - (t0 + i)];
                u_s = u_t, dt_s = dt_t;
            }
            avssm_scan_tile(n_t, dt_s, u_s, B_r + t0 * nstate, C_r + t0 * nstate, a->A + channel * nstate, nstate,
                            bias, a->delta_softplus, h, acc);
            for (int i = 0; i < n_t; ++i) {
                const int64_t p = k == 0 ? t0 + i : length - 1 - (t0 + i);
                float v = acc[i] + skip * u_s[i];
                if (z_r) v *= z_r[p] / (1.0f + expf(-z_r[p]));
                y_r[p] = k == 0 ? v : (y_r[p] + v) / 2.0f;  /* direction 0's output is stored first */
            }
        }
    }
    return 0;
}

static int row_of(const void *args, int64_t row) { return avssm_bidir_scan_cpu_row(args, row); }

int avssm_bidir_scan_cpu_fwd(const float *u, const float *delta, const float *A, const float *Bt, const float *Ct,
                             const float *D, const float *z, const float *delta_bias, int delta_softplus, float *y,
                             int64_t batch, int64_t dim, int64_t length, int64_t nstate, int num_threads) {
    if (nstate < 1 || nstate > AVSSM_MAX_STATE) return 1;
    float *Bs = avssm_bidir_steps(Bt, batch, length, nstate);
    float *Cs = Bs ? avssm_bidir_steps(Ct, batch, length, nstate) : NULL;
    int rc = 2;
    if (Cs) {
        const avssm_bidir_scan_cpu_args args = {u, delta, A, Bs, Cs, D, z, delta_bias, delta_softplus, y,
                                                batch, dim, length, nstate};
        rc = avssm_cpu_rows(row_of, &args, batch * dim, num_threads);
    }
    free(Bs), free(Cs);
    return rc;
}
