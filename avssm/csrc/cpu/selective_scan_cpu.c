/* Selective scan on the CPU: forward (one pass over L per (batch, channel), the state in registers)
 * and the backward of the bare recurrence for training.
 *
 * Every input element is read once and y written once: delta_bias, softplus, the D skip and the
 * SiLU(z) gate are fused. Tokens go in tiles of AVSSM_TILE so the element-wise parts (softplus, the gate,
 * and exp(delta*A) when N == 1) vectorize; the recurrence vectorizes over N. Called through ctypes by
 * avssm/ops/cpu_kernel.py (avssm_scan_cpu_fwd, all rows with OpenMP) and by ONNX Runtime's SelectiveScan op
 * (ort_selective_scan.c: avssm_scan_cpu_fwd_row on its thread pool), with fp32 contiguous tensors, B/C
 * transposed to (batch, groups, L, N) so one token's N values are adjacent. The specification is
 * selective_scan_ref in selective_scan.py.
 */
#include <math.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "selective_scan_cpu.h"

int avssm_scan_cpu_check(const avssm_scan_cpu_args *args) {
    return args->nstate < 1 || args->nstate > AVSSM_MAX_STATE || args->groups < 1 || args->dim % args->groups != 0;
}

void avssm_scan_cpu_fwd_row(const avssm_scan_cpu_args *args, int64_t row) {
    const int64_t dim = args->dim, length = args->length, nstate = args->nstate, groups = args->groups;
    const int64_t b = row / dim, d = row % dim, g = d / (dim / groups);
    const float *u_r = args->u + row * length;
    const float *dt_r = args->delta + row * length;
    const float *z_r = args->z ? args->z + row * length : NULL;
    const float *B_r = args->Bt + (b * groups + g) * length * nstate;
    const float *C_r = args->Ct + (b * groups + g) * length * nstate;
    const float *A_r = args->A + d * nstate;
    const float bias = args->delta_bias ? args->delta_bias[d] : 0.0f;
    const float skip = args->D ? args->D[d] : 0.0f;
    float *y_r = args->y + row * length;
    float h[AVSSM_MAX_STATE], acc[AVSSM_TILE];
    memset(h, 0, sizeof(float) * (size_t)nstate);
    for (int64_t t0 = 0; t0 < length; t0 += AVSSM_TILE) {
        const int n_t = (int)(length - t0 < AVSSM_TILE ? length - t0 : AVSSM_TILE);
        avssm_scan_tile(n_t, dt_r + t0, u_r + t0, B_r + t0 * nstate, C_r + t0 * nstate, A_r, nstate, bias,
                        args->delta_softplus, h, acc);
        for (int i = 0; i < n_t; ++i) {
            float out = acc[i] + skip * u_r[t0 + i];
            if (z_r) out *= z_r[t0 + i] / (1.0f + expf(-z_r[t0 + i]));
            y_r[t0 + i] = out;
        }
    }
    if (args->last_state) memcpy(args->last_state + row * nstate, h, sizeof(float) * (size_t)nstate);
}

int avssm_scan_cpu_fwd(const float *u, const float *delta, const float *A, const float *Bt,
                       const float *Ct, const float *D, const float *z, const float *delta_bias,
                       int delta_softplus, float *y, float *last_state, int64_t batch, int64_t dim,
                       int64_t groups, int64_t length, int64_t nstate, int num_threads) {
    const avssm_scan_cpu_args args = {u, delta, A, Bt, Ct, D, z, delta_bias, delta_softplus, y, last_state,
                                      batch, dim, groups, length, nstate};
    if (avssm_scan_cpu_check(&args)) return 1;
#pragma omp parallel for schedule(static) num_threads(num_threads)
    for (int64_t row = 0; row < batch * dim; ++row) avssm_scan_cpu_fwd_row(&args, row);
    return 0;
}

/* Backward of the bare scan y_l = sum_n C_l[n] h_l[n], h_l = exp(delta_l A) h_{l-1} + delta_l B_l u_l
 * (delta already biased and softplus-ed; D and the gate are differentiated by PyTorch around it).
 * Per row, the states are recomputed forward into a scratch buffer, then one reverse pass carries
 * dL/dh. B and C are shared by the channels of a group, so their gradients are written per row
 * (dBt_rows, dCt_rows: (batch*dim, L, N)) and dA per row ((batch*dim, N)); the caller sums them.
 * Returns 1 for a bad shape, 2 when the scratch buffer cannot be allocated.
 */
int avssm_scan_cpu_bwd(const float *u, const float *delta, const float *A, const float *Bt, const float *Ct,
                       const float *dy, float *du, float *ddelta, float *dA_rows, float *dBt_rows,
                       float *dCt_rows, int64_t batch, int64_t dim, int64_t groups, int64_t length,
                       int64_t nstate, int num_threads) {
    if (nstate < 1 || nstate > AVSSM_MAX_STATE || groups < 1 || dim % groups != 0) return 1;
    const int64_t per_group = dim / groups;
    const int64_t rows = batch * dim;
    int failed = 0;
#pragma omp parallel for schedule(static) num_threads(num_threads)
    for (int64_t row = 0; row < rows; ++row) {
        const int64_t b = row / dim, d = row % dim, g = d / per_group;
        const float *u_r = u + row * length, *dt_r = delta + row * length, *dy_r = dy + row * length;
        const float *B_r = Bt + (b * groups + g) * length * nstate;
        const float *C_r = Ct + (b * groups + g) * length * nstate;
        const float *A_r = A + d * nstate;
        float *dB_r = dBt_rows + row * length * nstate, *dC_r = dCt_rows + row * length * nstate;
        /* hs[(l + 1) * N + n] is h_l; hs[0..N) is the zero initial state */
        float *hs = malloc(sizeof(float) * (size_t)((length + 1) * nstate));
        if (!hs) {
#pragma omp atomic write
            failed = 2;
            continue;
        }
        memset(hs, 0, sizeof(float) * (size_t)nstate);
        for (int64_t l = 0; l < length; ++l) {
            const float dtu = dt_r[l] * u_r[l];
            for (int64_t n = 0; n < nstate; ++n)
                hs[(l + 1) * nstate + n] = expf(dt_r[l] * A_r[n]) * hs[l * nstate + n] + dtu * B_r[l * nstate + n];
        }
        float carry[AVSSM_MAX_STATE];
        double dA_acc[AVSSM_MAX_STATE];
        for (int64_t n = 0; n < nstate; ++n) carry[n] = 0.0f, dA_acc[n] = 0.0;
        for (int64_t l = length - 1; l >= 0; --l) {
            const float dt = dt_r[l], ul = u_r[l], dyl = dy_r[l];
            float du_l = 0.0f, ddt_l = 0.0f;
            for (int64_t n = 0; n < nstate; ++n) {
                const float a = expf(dt * A_r[n]);
                const float h_prev = hs[l * nstate + n], Bn = B_r[l * nstate + n];
                const float dh = carry[n] + C_r[l * nstate + n] * dyl;  /* dL/dh_l */
                dC_r[l * nstate + n] = dyl * hs[(l + 1) * nstate + n];
                dB_r[l * nstate + n] = dh * dt * ul;
                du_l += dh * dt * Bn;
                ddt_l += dh * (ul * Bn + A_r[n] * a * h_prev);
                dA_acc[n] += (double)(dh * dt * a * h_prev);
                carry[n] = a * dh;
            }
            du[row * length + l] = du_l;
            ddelta[row * length + l] = ddt_l;
        }
        for (int64_t n = 0; n < nstate; ++n) dA_rows[row * nstate + n] = (float)dA_acc[n];
        free(hs);
    }
    return failed;
}

int avssm_cpu_rows(avssm_cpu_row_fn row, const void *args, int64_t rows, int num_threads) {
    int failed = 0;
#pragma omp parallel for schedule(static) num_threads(num_threads)
    for (int64_t r = 0; r < rows; ++r) {
        const int rc = row(args, r);
        if (rc) {
#pragma omp atomic write
            failed = rc;
        }
    }
    return failed;
}
