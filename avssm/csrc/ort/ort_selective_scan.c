/* SelectiveScan for ONNX Runtime on the CPU: a custom-op library that runs the SelectiveScan nodes of a
 * plugin-form file (`avssm export --scan-op plugin`) with avssm's CPU kernels (selective_scan_cpu.c,
 * cross_scan_cpu.c, bidirectional_scan_cpu.c, compiled into the same library). The node contract is
 * avssm/csrc/trt/README.md: domain trt.plugins, inputs u, delta, A, B, C, then D, z, delta_bias as the has_*
 * attributes say, and the layout (sequence, cross-2d or bidirectional). fp32 only: a session of a file of
 * another type fails to load with it (avssm's runtime lowers such files' nodes to standard ops instead).
 *
 * Loaded by SessionOptions.register_custom_ops_library, which calls RegisterCustomOps. Built and found by
 * avssm/native.py (ort_scan_op_library); the runtime registers it for plugin-form files on the CPU.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ort_abi.h"
#include "selective_scan_cpu.h"

#define ORT_API_VERSION_USED 17 /* KernelContext_ParallelFor (ONNX Runtime >= 1.17) */
#define CUSTOM_OP_VERSION 16    /* the OrtCustomOp members up to CreateKernelV2 / KernelComputeV2 */
#define MAX_INPUTS 8

typedef OrtStatus *(*CreateStatusFn)(int, const char *);
typedef OrtStatus *(*CreateCustomOpDomainFn)(const char *, OrtCustomOpDomain **);
typedef OrtStatus *(*CustomOpDomainAddFn)(OrtCustomOpDomain *, const OrtCustomOp *);
typedef OrtStatus *(*AddCustomOpDomainFn)(OrtSessionOptions *, OrtCustomOpDomain *);
typedef OrtStatus *(*GetTensorMutableDataFn)(OrtValue *, void **);
typedef OrtStatus *(*GetTensorElementTypeFn)(const OrtTensorTypeAndShapeInfo *, int *);
typedef OrtStatus *(*GetDimensionsCountFn)(const OrtTensorTypeAndShapeInfo *, size_t *);
typedef OrtStatus *(*GetDimensionsFn)(const OrtTensorTypeAndShapeInfo *, int64_t *, size_t);
typedef OrtStatus *(*GetTensorTypeAndShapeFn)(const OrtValue *, OrtTensorTypeAndShapeInfo **);
typedef OrtStatus *(*KernelInfoGetAttributeInt64Fn)(const OrtKernelInfo *, const char *, int64_t *);
typedef OrtStatus *(*KernelContextGetInputCountFn)(const OrtKernelContext *, size_t *);
typedef OrtStatus *(*KernelContextGetInputFn)(const OrtKernelContext *, size_t, const OrtValue **);
typedef OrtStatus *(*KernelContextGetOutputFn)(OrtKernelContext *, size_t, const int64_t *, size_t, OrtValue **);
typedef OrtStatus *(*KernelContextParallelForFn)(const OrtKernelContext *, void (*)(void *, size_t), size_t, size_t,
                                                 void *);
typedef void (*ReleaseStatusFn)(OrtStatus *);
typedef void (*ReleaseTensorTypeAndShapeInfoFn)(OrtTensorTypeAndShapeInfo *);

enum { LAYOUT_SEQUENCE = 0, LAYOUT_CROSS_2D = 1, LAYOUT_BIDIRECTIONAL = 2 };

typedef struct {
    const OrtApi *api;
    int64_t has_D, has_z, has_delta_bias, delta_softplus, layout;
} ScanKernel;

typedef struct {  /* one input: its data, element type and shape (at most 5 dimensions) */
    float *data;
    int type;
    size_t rank;
    int64_t dims[5];
} Tensor;

static OrtStatus *error(const OrtApi *api, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static OrtStatus *error(const OrtApi *api, const char *fmt, ...) {
    char message[512];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    return ORT_API_FN(api, ORT_CreateStatus, CreateStatusFn)(ORT_INVALID_ARGUMENT, message);
}

static void format_shape(const int64_t *dims, size_t rank, char *out, size_t size) {
    size_t used = (size_t)snprintf(out, size, "(");
    for (size_t i = 0; i < rank && used < size; ++i)
        used += (size_t)snprintf(out + used, size - used, i ? ", %lld" : "%lld", (long long)dims[i]);
    if (used < size) snprintf(out + used, size - used, rank == 1 ? ",)" : ")");
}

/* The tensor's shape must be `expected` (rank entries); a mismatch names the tensor and both shapes. */
static OrtStatus *check_shape(const OrtApi *api, const char *name, const Tensor *t, const int64_t *expected,
                              size_t rank) {
    int same = t->rank == rank;
    for (size_t i = 0; same && i < rank; ++i) same = t->dims[i] == expected[i];
    if (same) return NULL;
    char want[96], got[96];
    format_shape(expected, rank, want, sizeof want);
    format_shape(t->dims, t->rank, got, sizeof got);
    return error(api, "SelectiveScan: %s has shape %s, expected %s", name, got, want);
}

static OrtStatus *read_input(const OrtApi *api, OrtKernelContext *context, size_t index, const char *name,
                             Tensor *out) {
    const OrtValue *value = NULL;
    OrtTensorTypeAndShapeInfo *info = NULL;
    OrtStatus *status = ORT_API_FN(api, ORT_KernelContext_GetInput, KernelContextGetInputFn)(context, index, &value);
    /* an optional input given an empty name ("") arrives as no value at all */
    if (!status && !value)
        return error(api, "SelectiveScan: input %zu (%s) has an empty name; the node's has_* attributes say it is "
                          "given, so name its tensor or set the attribute to 0", index, name);
    if (!status) status = ORT_API_FN(api, ORT_GetTensorTypeAndShape, GetTensorTypeAndShapeFn)(value, &info);
    if (!status) status = ORT_API_FN(api, ORT_GetTensorElementType, GetTensorElementTypeFn)(info, &out->type);
    if (!status) status = ORT_API_FN(api, ORT_GetDimensionsCount, GetDimensionsCountFn)(info, &out->rank);
    if (!status && out->rank > 5) status = error(api, "SelectiveScan: %s has %zu dimensions", name, out->rank);
    if (!status) status = ORT_API_FN(api, ORT_GetDimensions, GetDimensionsFn)(info, out->dims, out->rank);
    /* inputs are read only; the API hands out one mutable pointer for inputs and outputs alike */
    if (!status)
        status = ORT_API_FN(api, ORT_GetTensorMutableData, GetTensorMutableDataFn)((OrtValue *)value,
                                                                                  (void **)&out->data);
    if (info) ORT_API_FN(api, ORT_ReleaseTensorTypeAndShapeInfo, ReleaseTensorTypeAndShapeInfoFn)(info);
    if (!status && out->type != ORT_TENSOR_FLOAT)
        status = error(api, "SelectiveScan: %s is not fp32 (ONNX Runtime element type %d); avssm's CPU op runs "
                            "fp32 files", name, out->type);
    return status;
}

/* (groups, N, L) per batch -> (groups, L, N): the kernel reads one token's N values together. */
static float *transpose_state_axis(const float *x, int64_t planes, int64_t nstate, int64_t length) {
    float *out = malloc(sizeof(float) * (size_t)(planes * nstate * length));
    if (!out) return NULL;
    for (int64_t p = 0; p < planes; ++p)
        for (int64_t n = 0; n < nstate; ++n)
            for (int64_t t = 0; t < length; ++t)
                out[(p * length + t) * nstate + n] = x[(p * nstate + n) * length + t];
    return out;
}

static OrtStatus *out_of_memory(const OrtApi *api) {
    return ORT_API_FN(api, ORT_CreateStatus, CreateStatusFn)(ORT_FAIL, "SelectiveScan: out of memory");
}

static OrtStatus *output(const OrtApi *api, OrtKernelContext *context, const int64_t *dims, size_t rank,
                         float **y) {
    OrtValue *value = NULL;
    OrtStatus *status = ORT_API_FN(api, ORT_KernelContext_GetOutput, KernelContextGetOutputFn)(context, 0, dims, rank,
                                                                                             &value);
    if (!status) status = ORT_API_FN(api, ORT_GetTensorMutableData, GetTensorMutableDataFn)(value, (void **)y);
    return status;
}

/* Rows run on ONNX Runtime's intra-op threads: a second pool (OpenMP) would fight its spinning workers. */
typedef struct {
    const void *args;
    avssm_cpu_row_fn row;
    int failed;  /* a row's non-zero return code */
} Rows;

static void run_row(void *rows, size_t row) {
    Rows *r = rows;
    const int rc = r->row(r->args, (int64_t)row);
    if (rc) __atomic_store_n(&r->failed, rc, __ATOMIC_RELAXED);
}

static OrtStatus *run_rows(const OrtApi *api, OrtKernelContext *context, Rows *rows, int64_t count) {
    OrtStatus *status = ORT_API_FN(api, ORT_KernelContext_ParallelFor, KernelContextParallelForFn)(
        context, run_row, (size_t)count, 0, rows);
    if (!status && rows->failed == 2) return out_of_memory(api);
    if (!status && rows->failed) return error(api, "SelectiveScan: the CPU kernel rejected the shapes");
    return status;
}

static int sequence_row(const void *args, int64_t row) { avssm_scan_cpu_fwd_row(args, row); return 0; }
static int cross_2d_row(const void *args, int64_t row) { return avssm_cross_scan_cpu_row(args, row); }
static int bidirectional_row(const void *args, int64_t row) { return avssm_bidir_scan_cpu_row(args, row); }

/* The inputs of a node: u, delta, A, B, C, then D, z, delta_bias (NULL where the node has none). */
typedef struct {
    const Tensor *u, *delta, *A, *B, *C, *D, *z, *bias;
} Inputs;

static OrtStatus *check_per_channel(const OrtApi *api, const Inputs *in, int64_t channels) {
    const int64_t shape[1] = {channels};
    OrtStatus *status = NULL;
    if ((in->D && (status = check_shape(api, "D", in->D, shape, 1))) ||
        (in->bias && (status = check_shape(api, "delta_bias", in->bias, shape, 1))))
        return status;
    return NULL;
}

static OrtStatus *check_nstate(const OrtApi *api, int64_t nstate) {
    if (nstate < 1 || nstate > 256) return error(api, "SelectiveScan: N = %lld, expected 1 to 256", (long long)nstate);
    return NULL;
}

/* B and C with (L, N) per (batch, group), as the sequence kernels read them: the same memory at N = 1 (VMamba);
 * otherwise *Bt and *Ct are allocated and must be freed. */
static OrtStatus *token_major(const OrtApi *api, const Inputs *in, int64_t planes, int64_t nstate, int64_t length,
                              float **Bt, float **Ct) {
    *Bt = in->B->data, *Ct = in->C->data;
    if (nstate == 1) return NULL;
    *Bt = transpose_state_axis(in->B->data, planes, nstate, length);
    *Ct = *Bt ? transpose_state_axis(in->C->data, planes, nstate, length) : NULL;
    if (*Ct) return NULL;
    free(*Bt);
    return out_of_memory(api);
}

static OrtStatus *compute_sequence(const ScanKernel *k, OrtKernelContext *context, const Inputs *in) {
    const OrtApi *api = k->api;
    const Tensor *u = in->u, *A = in->A, *B = in->B;
    if (u->rank != 3) return error(api, "SelectiveScan: u has %zu dimensions, expected 3 (batch, dim, L)", u->rank);
    if (A->rank != 2) return error(api, "SelectiveScan: A has %zu dimensions, expected 2 (dim, N)", A->rank);
    if (B->rank != 4) return error(api, "SelectiveScan: B has %zu dimensions, expected 4 (batch, groups, N, L)",
                                   B->rank);
    const int64_t batch = u->dims[0], dim = u->dims[1], length = u->dims[2];
    const int64_t nstate = A->dims[1], groups = B->dims[1];
    const int64_t seq[3] = {batch, dim, length}, a_shape[2] = {dim, nstate};
    const int64_t bc_shape[4] = {batch, groups, nstate, length};
    OrtStatus *status = NULL;
    if ((status = check_shape(api, "delta", in->delta, seq, 3)) || (status = check_shape(api, "A", A, a_shape, 2)) ||
        (status = check_shape(api, "B", B, bc_shape, 4)) || (status = check_shape(api, "C", in->C, bc_shape, 4)) ||
        (in->z && (status = check_shape(api, "z", in->z, seq, 3))) || (status = check_per_channel(api, in, dim)))
        return status;
    if (groups < 1 || dim % groups != 0)
        return error(api, "SelectiveScan: dim %lld is not a multiple of groups %lld", (long long)dim,
                     (long long)groups);
    if ((status = check_nstate(api, nstate))) return status;
    float *y = NULL, *Bt = NULL, *Ct = NULL;
    if ((status = output(api, context, seq, 3, &y))) return status;
    if (batch == 0 || dim == 0 || length == 0) return NULL;
    if ((status = token_major(api, in, batch * groups, nstate, length, &Bt, &Ct))) return status;
    const avssm_scan_cpu_args args = {u->data, in->delta->data, A->data, Bt, Ct, in->D ? in->D->data : NULL,
                                      in->z ? in->z->data : NULL, in->bias ? in->bias->data : NULL,
                                      (int)k->delta_softplus, y, NULL, batch, dim, groups, length, nstate};
    Rows rows = {&args, sequence_row, avssm_scan_cpu_check(&args)};
    status = rows.failed ? error(api, "SelectiveScan: the CPU kernel rejected the shapes")
                         : run_rows(api, context, &rows, batch * dim);
    if (nstate > 1) free(Bt), free(Ct);
    return status;
}

/* VMamba's four directions on the (H, W) map (cross_scan_cpu.c). */
static OrtStatus *compute_cross_2d(const ScanKernel *k, OrtKernelContext *context, const Inputs *in) {
    const OrtApi *api = k->api;
    const Tensor *u = in->u, *A = in->A, *B = in->B;
    if (u->rank != 4)
        return error(api, "SelectiveScan: u has %zu dimensions, expected 4 (batch, dim, H, W) in layout cross-2d",
                     u->rank);
    if (A->rank != 2) return error(api, "SelectiveScan: A has %zu dimensions, expected 2 (4 * dim, N)", A->rank);
    if (in->z) return error(api, "SelectiveScan: layout cross-2d takes no z (has_z must be 0)");
    const int64_t batch = u->dims[0], dim = u->dims[1], height = u->dims[2], width = u->dims[3];
    const int64_t nstate = A->dims[1];
    const int64_t delta_shape[5] = {batch, 4, dim, height, width}, a_shape[2] = {4 * dim, nstate};
    const int64_t bc_shape[5] = {batch, 4, nstate, height, width};
    OrtStatus *status = NULL;
    if ((status = check_shape(api, "delta", in->delta, delta_shape, 5)) ||
        (status = check_shape(api, "A", A, a_shape, 2)) || (status = check_shape(api, "B", B, bc_shape, 5)) ||
        (status = check_shape(api, "C", in->C, bc_shape, 5)) || (status = check_per_channel(api, in, 4 * dim)) ||
        (status = check_nstate(api, nstate)))
        return status;
    float *y = NULL;
    if ((status = output(api, context, u->dims, 4, &y))) return status;
    if (batch == 0 || dim == 0 || height == 0 || width == 0) return NULL;
    const avssm_cross_scan_cpu_args args = {u->data, in->delta->data, A->data, B->data, in->C->data,
                                            in->D ? in->D->data : NULL, in->bias ? in->bias->data : NULL,
                                            (int)k->delta_softplus, y, batch, dim, height, width, nstate};
    Rows rows = {&args, cross_2d_row, 0};
    return run_rows(api, context, &rows, batch * dim);
}

/* Vim's two directions on one sequence (bidirectional_scan_cpu.c). */
static OrtStatus *compute_bidirectional(const ScanKernel *k, OrtKernelContext *context, const Inputs *in) {
    const OrtApi *api = k->api;
    const Tensor *u = in->u, *A = in->A, *B = in->B;
    if (u->rank != 3 || u->dims[1] % 2)
        return error(api, "SelectiveScan: u must be (batch, 2 * dim, L) in layout bidirectional, got %zu dimensions"
                          " with %lld channels", u->rank, (long long)(u->rank > 1 ? u->dims[1] : 0));
    if (A->rank != 2) return error(api, "SelectiveScan: A has %zu dimensions, expected 2 (2 * dim, N)", A->rank);
    const int64_t batch = u->dims[0], dim = u->dims[1] / 2, length = u->dims[2], nstate = A->dims[1];
    const int64_t gate[3] = {batch, dim, length}, a_shape[2] = {2 * dim, nstate};
    const int64_t bc_shape[4] = {batch, 2, nstate, length};
    OrtStatus *status = NULL;
    if ((status = check_shape(api, "delta", in->delta, u->dims, 3)) || (status = check_shape(api, "A", A, a_shape, 2)) ||
        (status = check_shape(api, "B", B, bc_shape, 4)) || (status = check_shape(api, "C", in->C, bc_shape, 4)) ||
        (in->z && (status = check_shape(api, "z", in->z, gate, 3))) ||
        (status = check_per_channel(api, in, 2 * dim)) || (status = check_nstate(api, nstate)))
        return status;
    float *y = NULL, *Bt = NULL, *Ct = NULL;
    if ((status = output(api, context, gate, 3, &y))) return status;
    if (batch == 0 || dim == 0 || length == 0) return NULL;
    if ((status = token_major(api, in, batch * 2, nstate, length, &Bt, &Ct))) return status;
    float *Bs = avssm_bidir_steps(Bt, batch, length, nstate);  /* direction 1's in its step order */
    float *Cs = Bs ? avssm_bidir_steps(Ct, batch, length, nstate) : NULL;
    if (nstate > 1) free(Bt), free(Ct);
    if (!Cs) {
        free(Bs);
        return out_of_memory(api);
    }
    const avssm_bidir_scan_cpu_args args = {u->data, in->delta->data, A->data, Bs, Cs, in->D ? in->D->data : NULL,
                                            in->z ? in->z->data : NULL, in->bias ? in->bias->data : NULL,
                                            (int)k->delta_softplus, y, batch, dim, length, nstate};
    Rows rows = {&args, bidirectional_row, 0};
    status = run_rows(api, context, &rows, batch * dim);
    free(Bs), free(Cs);
    return status;
}

static OrtStatus *compute(void *kernel_state, OrtKernelContext *context) {
    const ScanKernel *k = kernel_state;
    const OrtApi *api = k->api;
    const char *names[MAX_INPUTS] = {"u", "delta", "A", "B", "C"};
    size_t expected_inputs = 5;
    if (k->has_D) names[expected_inputs++] = "D";
    if (k->has_z) names[expected_inputs++] = "z";
    if (k->has_delta_bias) names[expected_inputs++] = "delta_bias";
    size_t count = 0;
    OrtStatus *status = ORT_API_FN(api, ORT_KernelContext_GetInputCount, KernelContextGetInputCountFn)(context, &count);
    if (status) return status;
    if (count != expected_inputs)
        return error(api, "SelectiveScan: %zu inputs, expected %zu (5 + has_D + has_z + has_delta_bias)", count,
                     expected_inputs);
    Tensor t[MAX_INPUTS] = {{0}};
    for (size_t i = 0; i < count; ++i)
        if ((status = read_input(api, context, i, names[i], &t[i]))) return status;
    Inputs in = {&t[0], &t[1], &t[2], &t[3], &t[4], NULL, NULL, NULL};
    size_t next = 5;
    if (k->has_D) in.D = &t[next++];
    if (k->has_z) in.z = &t[next++];
    if (k->has_delta_bias) in.bias = &t[next++];
    if (k->layout == LAYOUT_CROSS_2D) return compute_cross_2d(k, context, &in);
    if (k->layout == LAYOUT_BIDIRECTIONAL) return compute_bidirectional(k, context, &in);
    return compute_sequence(k, context, &in);
}

static OrtStatus *create_kernel(const OrtCustomOp *op, const OrtApi *api, const OrtKernelInfo *info,
                                void **kernel) {
    (void)op;
    ScanKernel *k = calloc(1, sizeof *k);
    if (!k) return ORT_API_FN(api, ORT_CreateStatus, CreateStatusFn)(ORT_FAIL, "SelectiveScan: out of memory");
    k->api = api;
    const char *fields[4] = {"has_D", "has_z", "has_delta_bias", "delta_softplus"};
    int64_t *values[4] = {&k->has_D, &k->has_z, &k->has_delta_bias, &k->delta_softplus};
    for (int i = 0; i < 4; ++i) {
        OrtStatus *status =
            ORT_API_FN(api, ORT_KernelInfoGetAttribute_int64, KernelInfoGetAttributeInt64Fn)(info, fields[i],
                                                                                            values[i]);
        if (status) ORT_API_FN(api, ORT_ReleaseStatus, ReleaseStatusFn)(status);
        if (status || (*values[i] != 0 && *values[i] != 1)) {
            free(k);
            return error(api, "SelectiveScan: attribute %s is missing or not 0/1", fields[i]);
        }
    }
    /* layout: absent in version 1 nodes (sequence) */
    OrtStatus *status =
        ORT_API_FN(api, ORT_KernelInfoGetAttribute_int64, KernelInfoGetAttributeInt64Fn)(info, "layout", &k->layout);
    if (status) ORT_API_FN(api, ORT_ReleaseStatus, ReleaseStatusFn)(status), k->layout = LAYOUT_SEQUENCE;
    if (k->layout < LAYOUT_SEQUENCE || k->layout > LAYOUT_BIDIRECTIONAL) {
        const long long layout = (long long)k->layout;
        free(k);
        return error(api, "SelectiveScan: layout %lld is not 0 (sequence), 1 (cross-2d) or 2 (bidirectional); "
                          "a newer avssm wrote this file", layout);
    }
    *kernel = k;
    return NULL;
}

static void destroy_kernel(void *kernel) { free(kernel); }
static const char *op_name(const OrtCustomOp *op) { (void)op; return "SelectiveScan"; }
static const char *op_provider(const OrtCustomOp *op) { (void)op; return "CPUExecutionProvider"; }
static int float_type(const OrtCustomOp *op, size_t index) { (void)op, (void)index; return ORT_TENSOR_FLOAT; }
static size_t input_count(const OrtCustomOp *op) { (void)op; return MAX_INPUTS; }
static size_t output_count(const OrtCustomOp *op) { (void)op; return 1; }
/* u, delta, A, B, C always; the three after them only when the node has them */
static int input_characteristic(const OrtCustomOp *op, size_t index) {
    (void)op;
    return index < 5 ? ORT_INPUT_OUTPUT_REQUIRED : ORT_INPUT_OUTPUT_OPTIONAL;
}
static int required(const OrtCustomOp *op, size_t index) { (void)op, (void)index; return ORT_INPUT_OUTPUT_REQUIRED; }
static int default_memory(const OrtCustomOp *op, size_t index) { (void)op, (void)index; return 0; }
static int one(const OrtCustomOp *op) { (void)op; return 1; }

static const OrtCustomOp selective_scan_op = {
    .version = CUSTOM_OP_VERSION,
    .GetName = op_name,
    .GetExecutionProviderType = op_provider,
    .GetInputType = float_type,
    .GetInputTypeCount = input_count,
    .GetOutputType = float_type,
    .GetOutputTypeCount = output_count,
    .KernelDestroy = destroy_kernel,
    .GetInputCharacteristic = input_characteristic,
    .GetOutputCharacteristic = required,
    .GetInputMemoryType = default_memory,
    .GetVariadicInputMinArity = one,
    .GetVariadicInputHomogeneity = one,
    .GetVariadicOutputMinArity = one,
    .GetVariadicOutputHomogeneity = one,
    .CreateKernelV2 = create_kernel,
    .KernelComputeV2 = compute,
};

/* Called by ONNX Runtime when the library is registered with a session's options. The domain object lives
 * as long as the process: sessions made from these options keep pointing at it. */
OrtStatus *RegisterCustomOps(OrtSessionOptions *options, const OrtApiBase *api_base) {
    const OrtApi *api = api_base->GetApi(ORT_API_VERSION_USED);
    if (!api) {
        fprintf(stderr, "avssm: this ONNX Runtime (%s) is older than 1.17; SelectiveScan is not registered\n",
                api_base->GetVersionString());
        return NULL;
    }
    OrtCustomOpDomain *domain = NULL;
    OrtStatus *status = ORT_API_FN(api, ORT_CreateCustomOpDomain, CreateCustomOpDomainFn)("trt.plugins", &domain);
    if (!status) status = ORT_API_FN(api, ORT_CustomOpDomain_Add, CustomOpDomainAddFn)(domain, &selective_scan_op);
    if (!status) status = ORT_API_FN(api, ORT_AddCustomOpDomain, AddCustomOpDomainFn)(options, domain);
    return status;
}
