/* Selective scan forward on the CPU: one pass over L per (batch, channel), the state in registers.
 *
 * Called through ctypes by avssm/ops/cpu_kernel.py, which prepares the inputs (fp32, contiguous,
 * delta already biased and softplus'd, B/C transposed to (batch, groups, L, N) so that one token's
 * N values are adjacent) and applies D and the z gate afterwards. The specification is
 * selective_scan_ref in selective_scan.py.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_STATE 256

int avssm_scan_cpu_fwd(const float *u, const float *delta, const float *A, const float *Bt,
                       const float *Ct, float *y, float *last_state, int64_t batch, int64_t dim,
                       int64_t groups, int64_t length, int64_t nstate, int num_threads) {
    if (nstate < 1 || nstate > MAX_STATE || groups < 1 || dim % groups != 0) return 1;
    const int64_t per_group = dim / groups;
    const int64_t rows = batch * dim;
#pragma omp parallel for schedule(static) num_threads(num_threads)
    for (int64_t row = 0; row < rows; ++row) {
        const int64_t b = row / dim, d = row % dim, g = d / per_group;
        const float *u_r = u + row * length;
        const float *dt_r = delta + row * length;
        const float *B_r = Bt + (b * groups + g) * length * nstate;
        const float *C_r = Ct + (b * groups + g) * length * nstate;
        const float *A_r = A + d * nstate;
        float *y_r = y + row * length;
        float h[MAX_STATE];
        memset(h, 0, sizeof(float) * (size_t)nstate);
        for (int64_t t = 0; t < length; ++t) {
            const float dt = dt_r[t];
            const float dtu = dt * u_r[t];
            const float *Bv = B_r + t * nstate;
            const float *Cv = C_r + t * nstate;
            float acc = 0.0f;
            for (int64_t n = 0; n < nstate; ++n) {
                h[n] = expf(dt * A_r[n]) * h[n] + dtu * Bv[n];
                acc += h[n] * Cv[n];
            }
            y_r[t] = acc;
        }
        memcpy(last_state + row * nstate, h, sizeof(float) * (size_t)nstate);
    }
    return 0;
}
