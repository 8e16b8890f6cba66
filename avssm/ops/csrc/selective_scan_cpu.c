/* Selective scan forward on the CPU: one pass over L per (batch, channel), the state in registers.
 *
 * Every input element is read once and y written once: delta_bias, softplus, the D skip and the
 * SiLU(z) gate are fused. Tokens go in tiles of TILE so the element-wise parts (softplus, the gate,
 * and exp(delta*A) when N == 1) vectorize; the recurrence vectorizes over N. Called through ctypes by
 * avssm/ops/cpu_kernel.py with fp32 contiguous tensors, B/C transposed to (batch, groups, L, N) so
 * one token's N values are adjacent. The specification is selective_scan_ref in selective_scan.py.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_STATE 256
#define TILE 64

int avssm_scan_cpu_fwd(const float *u, const float *delta, const float *A, const float *Bt,
                       const float *Ct, const float *D, const float *z, const float *delta_bias,
                       int delta_softplus, float *y, float *last_state, int64_t batch, int64_t dim,
                       int64_t groups, int64_t length, int64_t nstate, int num_threads) {
    if (nstate < 1 || nstate > MAX_STATE || groups < 1 || dim % groups != 0) return 1;
    const int64_t per_group = dim / groups;
    const int64_t rows = batch * dim;
#pragma omp parallel for schedule(static) num_threads(num_threads)
    for (int64_t row = 0; row < rows; ++row) {
        const int64_t b = row / dim, d = row % dim, g = d / per_group;
        const float *u_r = u + row * length;
        const float *dt_r = delta + row * length;
        const float *z_r = z ? z + row * length : NULL;
        const float *B_r = Bt + (b * groups + g) * length * nstate;
        const float *C_r = Ct + (b * groups + g) * length * nstate;
        const float *A_r = A + d * nstate;
        const float bias = delta_bias ? delta_bias[d] : 0.0f;
        const float skip = D ? D[d] : 0.0f;
        float *y_r = y + row * length;
        float h[MAX_STATE], dt[TILE], dtu[TILE], acc[TILE], da[TILE];
        memset(h, 0, sizeof(float) * (size_t)nstate);
        for (int64_t t0 = 0; t0 < length; t0 += TILE) {
            const int n_t = (int)(length - t0 < TILE ? length - t0 : TILE);
            for (int i = 0; i < n_t; ++i) {
                float v = dt_r[t0 + i] + bias;
                /* softplus with mamba_ssm's threshold; log(1 + e^v) is 0 where e^v < 2^-24 */
                if (delta_softplus) v = v <= 20.0f ? logf(1.0f + expf(v)) : v;
                dt[i] = v;
                dtu[i] = v * u_r[t0 + i];
            }
            if (nstate == 1) {
                const float a = A_r[0];
                for (int i = 0; i < n_t; ++i) da[i] = expf(dt[i] * a);
                float h0 = h[0];
                for (int i = 0; i < n_t; ++i) {
                    h0 = da[i] * h0 + dtu[i] * B_r[t0 + i];
                    acc[i] = h0 * C_r[t0 + i];
                }
                h[0] = h0;
            } else {
                for (int i = 0; i < n_t; ++i) {
                    const float *Bv = B_r + (t0 + i) * nstate;
                    const float *Cv = C_r + (t0 + i) * nstate;
                    float s = 0.0f;
                    for (int64_t n = 0; n < nstate; ++n) {
                        h[n] = expf(dt[i] * A_r[n]) * h[n] + dtu[i] * Bv[n];
                        s += h[n] * Cv[n];
                    }
                    acc[i] = s;
                }
            }
            for (int i = 0; i < n_t; ++i) {
                float out = acc[i] + skip * u_r[t0 + i];
                if (z_r) out *= z_r[t0 + i] / (1.0f + expf(-z_r[t0 + i]));
                y_r[t0 + i] = out;
            }
        }
        memcpy(last_state + row * nstate, h, sizeof(float) * (size_t)nstate);
    }
    return 0;
}
