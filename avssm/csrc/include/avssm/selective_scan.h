/* avssm selective scan: C API of the CUDA kernel library (libavssm_kernels).
 *
 * Semantics: avssm/csrc/trt/README.md (the SelectiveScan node contract, mamba_ssm's selective
 * scan). Every call is stream-ordered, allocates nothing, never synchronizes the host, and is
 * deterministic, so it can be captured in a CUDA graph.
 */
#ifndef AVSSM_SELECTIVE_SCAN_H
#define AVSSM_SELECTIVE_SCAN_H

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AVSSM_SCAN_MAX_STATE 256
#define AVSSM_SCAN_API_VERSION 4 /* 2: lanes_per_channel; 3: layout; 4: avssm_fused_scan_* */

/* dtype of u, delta, z, B, C and y; A, D and delta_bias are always fp32. */
typedef enum { AVSSM_FLOAT32 = 0, AVSSM_FLOAT16 = 1, AVSSM_BFLOAT16 = 2 } avssm_dtype;

/* Kernel layout of the N = 16 path (docs/kernels.md). */
typedef enum {
    AVSSM_LAYOUT_PLAN = 0,    /* the plan's choice: today always the channel layout */
    AVSSM_LAYOUT_CHANNEL = 1, /* lanes own channels and walk their sequences; split when the GPU is short of warps */
    AVSSM_LAYOUT_TOKENS = 2   /* threads own 32 consecutive tokens, a block-wide scan per state; never split */
} avssm_scan_layout;

typedef struct {
    /* shapes */
    int64_t batch, dim, length, dstate, groups; /* dim % groups == 0, 1 <= dstate <= 256 */
    avssm_dtype input_type;
    /* device pointers; all tensors dense row-major (L fastest) */
    const void *u;           /* (batch, dim, L)           input_type */
    const void *delta;       /* (batch, dim, L)           input_type */
    const float *A;          /* (dim, dstate)             fp32 */
    const void *B;           /* (batch, groups, dstate, L) input_type */
    const void *C;           /* (batch, groups, dstate, L) input_type */
    const float *D;          /* (dim) or NULL             fp32 */
    const void *z;           /* (batch, dim, L) or NULL   input_type */
    const float *delta_bias; /* (dim) or NULL             fp32 */
    int delta_softplus;      /* nonzero: softplus(delta + delta_bias) */
    void *y;                 /* (batch, dim, L)           input_type, written once */
    /* scratch for splitting long sequences across blocks: see avssm_selective_scan_workspace_size.
     * The call uses at most workspace_bytes of it, splitting less when it is smaller than the shape
     * wants; NULL/0 is allowed: long sequences then run one block per (batch, channel). */
    void *workspace;
    size_t workspace_bytes;
    /* N = 16 path: lanes per channel, each holding 16 / lanes of its states. 0 (zero-initialized params):
     * the plan chooses 1 or 2. 1, 2, 4 or 8 force that layout, to measure it (ignored on other paths);
     * any other value is invalid. */
    int lanes_per_channel;
    /* N = 16 path: an avssm_scan_layout. AVSSM_LAYOUT_TOKENS runs only when asked for, to measure it (a GPU
     * has not timed it yet); lanes_per_channel must then be 0. Ignored on other paths; other values invalid. */
    int layout;
} avssm_scan_params;

/* Bytes of workspace that let the call split long sequences across blocks. The value for the
 * largest shapes of a range covers every smaller shape (TensorRT sizes its workspace this way). */
size_t avssm_selective_scan_workspace_size(int64_t batch, int64_t dim, int64_t length, int64_t dstate,
                                           int num_multiprocessors);

/* Enqueue the forward scan on `stream`. Returns cudaErrorInvalidValue for bad shapes or pointers
 * (nothing is launched then), or the launch error. */
cudaError_t avssm_selective_scan_fwd(const avssm_scan_params *params, cudaStream_t stream);

/* How the call would run on a device with `num_multiprocessors` multiprocessors, within
 * params->workspace_bytes (pointers need only be non-NULL; nothing is launched, no GPU is needed):
 * lanes per channel (on the N = 16 channel layout 1 or 2, or params->lanes_per_channel when set; 1 elsewhere,
 * the token layout included) and segments per sequence (1: not split).
 * avssm_selective_scan_fwd runs this plan for the current device. cudaErrorInvalidValue for bad params. */
cudaError_t avssm_selective_scan_plan(const avssm_scan_params *params, int num_multiprocessors,
                                      int *lanes_per_channel, int *segments);

/* The node contract's fused layouts (version 2 SelectiveScan nodes, avssm/csrc/trt/README.md): VMamba's four
 * directions on an (H, W) map with their merge, and Vim's two directions on one sequence, averaged. */
typedef enum { AVSSM_FUSED_CROSS_2D = 1, AVSSM_FUSED_BIDIRECTIONAL = 2 } avssm_fused_layout;

typedef struct {
    int layout;                  /* an avssm_fused_layout; K = 4 (cross-2d) or 2 (bidirectional) directions */
    int64_t batch, dim, dstate;  /* dim: channels of y; 1 <= dstate <= 256 */
    int64_t height, width;       /* cross-2d: the map; bidirectional: height 1, width L */
    avssm_dtype input_type;
    /* device pointers, dense row-major */
    const void *u;           /* cross-2d (batch, dim, H, W); bidirectional (batch, 2 * dim, L)   input_type */
    const void *delta;       /* cross-2d (batch, 4, dim, H, W); bidirectional (batch, 2 * dim, L) input_type */
    const float *A;          /* (K * dim, dstate)                                                  fp32 */
    const void *B, *C;       /* cross-2d (batch, 4, dstate, H, W); bidirectional (batch, 2, dstate, L) */
    const float *D;          /* (K * dim) or NULL                                                  fp32 */
    const void *z;           /* bidirectional: (batch, dim, L) or NULL; cross-2d: NULL             input_type */
    const float *delta_bias; /* (K * dim) or NULL                                                  fp32 */
    int delta_softplus;
    void *y;                 /* cross-2d (batch, dim, H, W); bidirectional (batch, dim, L)         input_type */
    /* at least avssm_fused_scan_workspace_size for these shapes */
    void *workspace;
    size_t workspace_bytes;
} avssm_fused_scan_params;

/* Bytes of workspace avssm_fused_scan_fwd needs for shapes up to these (length = H * W or L; the value for the
 * largest shapes of a range covers every smaller shape). This version writes each direction's traversal into
 * the workspace, runs avssm_selective_scan_fwd over them and merges the outputs; the result is the contract's,
 * the bytes moved are the copies'. */
size_t avssm_fused_scan_workspace_size(int layout, int64_t batch, int64_t dim, int64_t length, int64_t dstate,
                                       avssm_dtype input_type, int num_multiprocessors);
/* Enqueue a fused scan on `stream`. cudaErrorInvalidValue for bad shapes or pointers, or a workspace smaller
 * than avssm_fused_scan_workspace_size (nothing is launched then), or the launch error. */
cudaError_t avssm_fused_scan_fwd(const avssm_fused_scan_params *params, cudaStream_t stream);

/* Multiprocessors of the current device (0 if there is none): the last argument of
 * avssm_selective_scan_workspace_size. */
int avssm_current_multiprocessors(void);

/* Text of a CUDA error code (so callers need not link the CUDA runtime themselves). */
const char *avssm_cuda_error_string(cudaError_t error);

/* AVSSM_SCAN_API_VERSION of the library, for loaders that check compatibility. */
int avssm_selective_scan_api_version(void);

#ifdef __cplusplus
}
#endif

#endif /* AVSSM_SELECTIVE_SCAN_H */
