/* Vim's two scan directions in one call on the CPU, without flipped copies: channel d of direction 0 walks its
 * sequence forwards and channel dim + d of direction 1 walks it backwards, both reading their inputs where they
 * lie, each gated by SiLU(z) at its position, and the two outputs averaged at each position as Vim combines
 * them. Per (batch, channel) row, the tile arithmetic shared with selective_scan_cpu.c (avssm_scan_tile). The
 * specification is bidirectional_selective_scan_ref in avssm/ops/bidirectional_scan.py.
 */
#include <stdlib.h>
#include <string.h>

#include "selective_scan_cpu.h"

int avssm_bidir_scan_cpu_row(const avssm_bidir_scan_cpu_args *a, int64_t row) {
    const int64_t nstate = a->nstate, dim = a->dim, length = a->length;
    if (nstate < 1 || nstate > AVSSM_MAX_STATE) return 1;
    const int64_t b = row / dim, d = row % dim;
    float *y_r = a->y + row * length;
    float *backward = malloc(sizeof(float) * (size_t)length);
    if (!backward) return 2;
    float h[AVSSM_MAX_STATE], acc[AVSSM_TILE], u_t[AVSSM_TILE], dt_t[AVSSM_TILE];
    float B_t[AVSSM_TILE * AVSSM_MAX_STATE], C_t[AVSSM_TILE * AVSSM_MAX_STATE];
    const float *z_r = a->z ? a->z + row * length : NULL;
    for (int k = 0; k < 2; ++k) {
        const int64_t channel = k * dim + d;
        const float *u_r = a->u + (b * 2 * dim + channel) * length;
        const float *dt_r = a->delta + (b * 2 * dim + channel) * length;
        const float *B_r = a->Bt + (b * 2 + k) * length * nstate, *C_r = a->Ct + (b * 2 + k) * length * nstate;
        const float bias = a->delta_bias ? a->delta_bias[channel] : 0.0f, skip = a->D ? a->D[channel] : 0.0f;
        float *out = k == 0 ? y_r : backward;
        memset(h, 0, sizeof(float) * (size_t)nstate);
        for (int64_t t0 = 0; t0 < length; t0 += AVSSM_TILE) {
            const int n_t = (int)(length - t0 < AVSSM_TILE ? length - t0 : AVSSM_TILE);
            for (int i = 0; i < n_t; ++i) {  /* step t0 + i of this direction is position p */
                const int64_t p = k == 0 ? t0 + i : length - 1 - (t0 + i);
                u_t[i] = u_r[p];
                dt_t[i] = dt_r[p];
                memcpy(B_t + i * nstate, B_r + p * nstate, sizeof(float) * (size_t)nstate);
                memcpy(C_t + i * nstate, C_r + p * nstate, sizeof(float) * (size_t)nstate);
            }
            avssm_scan_tile(n_t, dt_t, u_t, B_t, C_t, a->A + channel * nstate, nstate, bias, a->delta_softplus, h,
                            acc);
            for (int i = 0; i < n_t; ++i) {
                const int64_t p = k == 0 ? t0 + i : length - 1 - (t0 + i);
                float v = acc[i] + skip * u_t[i];
                if (z_r) v *= z_r[p] / (1.0f + expf(-z_r[p]));
                out[p] = v;
            }
        }
    }
    for (int64_t p = 0; p < length; ++p) y_r[p] = (y_r[p] + backward[p]) / 2.0f;
    free(backward);
    return 0;
}

static int row_of(const void *args, int64_t row) { return avssm_bidir_scan_cpu_row(args, row); }

int avssm_bidir_scan_cpu_fwd(const float *u, const float *delta, const float *A, const float *Bt, const float *Ct,
                             const float *D, const float *z, const float *delta_bias, int delta_softplus, float *y,
                             int64_t batch, int64_t dim, int64_t length, int64_t nstate, int num_threads) {
    if (nstate < 1 || nstate > AVSSM_MAX_STATE) return 1;
    const avssm_bidir_scan_cpu_args args = {u, delta, A, Bt, Ct, D, z, delta_bias, delta_softplus, y,
                                            batch, dim, length, nstate};
    return avssm_cpu_rows(row_of, &args, batch * dim, num_threads);
}
