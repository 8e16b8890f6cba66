/* The CPU selective scan's forward, one (batch, channel) row at a time, for callers that bring their own
 * threads (ort_selective_scan.c runs rows on ONNX Runtime's thread pool). avssm_scan_cpu_fwd in
 * selective_scan_cpu.c runs every row with OpenMP. Layouts: u, delta, z, y (batch, dim, L); A (dim, N);
 * Bt, Ct (batch, groups, L, N); D, delta_bias (dim); last_state (batch, dim, N) or NULL; fp32, contiguous.
 */
#ifndef AVSSM_SELECTIVE_SCAN_CPU_H
#define AVSSM_SELECTIVE_SCAN_CPU_H

#include <stdint.h>

typedef struct {
    const float *u, *delta, *A, *Bt, *Ct, *D, *z, *delta_bias;  /* D, z, delta_bias may be NULL */
    int delta_softplus;
    float *y, *last_state;
    int64_t batch, dim, groups, length, nstate;
} avssm_scan_cpu_args;

/* Non-zero when N is not 1..256 or dim is not a multiple of groups. */
int avssm_scan_cpu_check(const avssm_scan_cpu_args *args);
/* Row `row` (b * dim + d) of y, and of last_state when it is not NULL. */
void avssm_scan_cpu_fwd_row(const avssm_scan_cpu_args *args, int64_t row);

#endif
