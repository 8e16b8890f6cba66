/* The parts of ONNX Runtime's C ABI that ort_selective_scan.c uses.
 *
 * Declared here because the onnxruntime wheel ships no headers and a custom-op library is compiled on the
 * user's machine at first use. ONNX Runtime keeps this ABI stable across releases:
 *   - OrtApi (what OrtApiBase.GetApi returns) is a table of function pointers that only grows at its end, so
 *     an entry's position never changes; a caller asks GetApi for the version whose entries it uses (17 here);
 *   - OrtCustomOp is a struct of callbacks whose `version` member tells the runtime which of its trailing
 *     members exist (the last ones read at version 16 are CreateKernelV2 and KernelComputeV2).
 * Only the signatures of the entries used are given; the runtime passes and expects exactly these.
 */
#ifndef AVSSM_ORT_ABI_H
#define AVSSM_ORT_ABI_H

#include <stddef.h>
#include <stdint.h>

typedef struct OrtStatus OrtStatus;  /* NULL means success */
typedef struct OrtValue OrtValue;
typedef struct OrtTensorTypeAndShapeInfo OrtTensorTypeAndShapeInfo;
typedef struct OrtKernelInfo OrtKernelInfo;
typedef struct OrtKernelContext OrtKernelContext;
typedef struct OrtCustomOpDomain OrtCustomOpDomain;
typedef struct OrtSessionOptions OrtSessionOptions;
typedef void OrtApi;  /* used only as a table of function pointers, through ORT_API_FN */

enum { ORT_FAIL = 1, ORT_INVALID_ARGUMENT = 2 };                      /* OrtErrorCode */
enum { ORT_TENSOR_FLOAT = 1 };                                        /* ONNXTensorElementDataType */
enum { ORT_INPUT_OUTPUT_REQUIRED = 0, ORT_INPUT_OUTPUT_OPTIONAL = 1 }; /* OrtCustomOpInputOutputCharacteristic */

typedef struct OrtApiBase {
    const OrtApi *(*GetApi)(uint32_t version);
    const char *(*GetVersionString)(void);
} OrtApiBase;

/* Positions in OrtApi, with the signature of each entry. */
#define ORT_CreateStatus 0                   /* OrtStatus *(int code, const char *message) */
#define ORT_CreateCustomOpDomain 26          /* OrtStatus *(const char *domain, OrtCustomOpDomain **out) */
#define ORT_CustomOpDomain_Add 27            /* OrtStatus *(OrtCustomOpDomain *, const OrtCustomOp *) */
#define ORT_AddCustomOpDomain 28             /* OrtStatus *(OrtSessionOptions *, OrtCustomOpDomain *) */
#define ORT_GetTensorMutableData 51          /* OrtStatus *(OrtValue *, void **out) */
#define ORT_GetTensorElementType 60          /* OrtStatus *(const OrtTensorTypeAndShapeInfo *, int *out) */
#define ORT_GetDimensionsCount 61            /* OrtStatus *(const OrtTensorTypeAndShapeInfo *, size_t *out) */
#define ORT_GetDimensions 62                 /* OrtStatus *(const OrtTensorTypeAndShapeInfo *, int64_t *, size_t) */
#define ORT_GetTensorTypeAndShape 65         /* OrtStatus *(const OrtValue *, OrtTensorTypeAndShapeInfo **out) */
#define ORT_KernelInfoGetAttribute_int64 86  /* OrtStatus *(const OrtKernelInfo *, const char *name, int64_t *out) */
#define ORT_KernelContext_GetInputCount 88   /* OrtStatus *(const OrtKernelContext *, size_t *out) */
#define ORT_KernelContext_GetInput 90        /* OrtStatus *(const OrtKernelContext *, size_t, const OrtValue **) */
#define ORT_KernelContext_GetOutput 91       /* OrtStatus *(OrtKernelContext *, size_t, const int64_t *dims,
                                                            size_t dim_count, OrtValue **out) */
#define ORT_ReleaseStatus 93                 /* void (OrtStatus *) */
#define ORT_ReleaseTensorTypeAndShapeInfo 99 /* void (OrtTensorTypeAndShapeInfo *) */
#define ORT_KernelContext_ParallelFor 274    /* OrtStatus *(const OrtKernelContext *, void (*fn)(void *, size_t),
                                                            size_t total, size_t num_batch, void *fn_arg);
                                                since API version 17 (ONNX Runtime 1.17) */

/* The entry at `position` of `api`, as a function pointer of type `fn_type`. */
typedef void (*OrtApiEntry)(void);
#define ORT_API_FN(api, position, fn_type) ((fn_type)((const OrtApiEntry *)(api))[position])

typedef struct OrtCustomOp OrtCustomOp;
struct OrtCustomOp {
    uint32_t version;
    void *(*CreateKernel)(const OrtCustomOp *op, const OrtApi *api, const OrtKernelInfo *info);
    const char *(*GetName)(const OrtCustomOp *op);
    const char *(*GetExecutionProviderType)(const OrtCustomOp *op);
    int (*GetInputType)(const OrtCustomOp *op, size_t index);
    size_t (*GetInputTypeCount)(const OrtCustomOp *op);
    int (*GetOutputType)(const OrtCustomOp *op, size_t index);
    size_t (*GetOutputTypeCount)(const OrtCustomOp *op);
    void (*KernelCompute)(void *kernel, OrtKernelContext *context);
    void (*KernelDestroy)(void *kernel);
    int (*GetInputCharacteristic)(const OrtCustomOp *op, size_t index);   /* version >= 8 */
    int (*GetOutputCharacteristic)(const OrtCustomOp *op, size_t index);  /* version >= 8 */
    int (*GetInputMemoryType)(const OrtCustomOp *op, size_t index);       /* version >= 13 */
    int (*GetVariadicInputMinArity)(const OrtCustomOp *op);               /* version >= 14 */
    int (*GetVariadicInputHomogeneity)(const OrtCustomOp *op);
    int (*GetVariadicOutputMinArity)(const OrtCustomOp *op);
    int (*GetVariadicOutputHomogeneity)(const OrtCustomOp *op);
    OrtStatus *(*CreateKernelV2)(const OrtCustomOp *op, const OrtApi *api, const OrtKernelInfo *info,
                                 void **kernel);                          /* version >= 16 */
    OrtStatus *(*KernelComputeV2)(void *kernel, OrtKernelContext *context);
};

#endif
