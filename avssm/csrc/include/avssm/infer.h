/* avssm_infer: what `avssm run` does for one frame, as a C API for C++ / ROS 2 stacks and other languages.
 *
 *   frame (host or device, BGR/RGB/GRAY 8-bit, any stride) -> preprocess (one CUDA kernel) -> TensorRT engine
 *   -> postprocess (score threshold, class-aware NMS, top-k; avssm/runtime/pipeline.py's rules) -> detections
 *
 * Every function returns an avssm_status; on an error avssm_last_error() (per thread) holds one line naming the
 * file, tensor or argument and the fix. Nothing here calls exit() or throws across the API. Handles are not
 * shared between threads while a call runs. Use: avssm/csrc/infer/README.md.
 */
#ifndef AVSSM_INFER_H
#define AVSSM_INFER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a struct or a signature below changes; avssm_infer_api_version() says the library's. */
#define AVSSM_INFER_API_VERSION 1

typedef enum {
    AVSSM_OK = 0,
    AVSSM_ERROR_ARGUMENT = 1,  /* a null pointer, a bad size or value */
    AVSSM_ERROR_FILE = 2,      /* an engine or sidecar missing, unreadable or not avssm's */
    AVSSM_ERROR_MISMATCH = 3,  /* built with another TensorRT version or on another GPU */
    AVSSM_ERROR_PLUGIN = 4,    /* the engine needs avssm's plugin and it is not found or not registered */
    AVSSM_ERROR_SHAPE = 5,     /* a frame outside the engine's input profile */
    AVSSM_ERROR_CUDA = 6,      /* a CUDA call failed */
    AVSSM_ERROR_TENSORRT = 7,  /* TensorRT refused the engine or the inference */
    AVSSM_ERROR_UNSUPPORTED = 8 /* built without what this needs (no TensorRT/CUDA in this build) */
} avssm_status;

typedef enum {
    AVSSM_PIXEL_BGR8 = 0, /* 3 bytes per pixel, B G R (OpenCV's order) */
    AVSSM_PIXEL_RGB8 = 1,
    AVSSM_PIXEL_GRAY8 = 2, /* 1 byte per pixel, used for all three channels */
    AVSSM_PIXEL_NV12 = 3   /* Jetson cameras: the Y plane (height rows), then the interleaved UV plane (height / 2
                            * rows) right after it, both with `stride`; even width and height; converted to RGB as
                            * OpenCV's COLOR_YUV2BGR_NV12 (BT.601, video range) */
} avssm_pixel_format;

typedef enum { AVSSM_MEMORY_HOST = 0, AVSSM_MEMORY_DEVICE = 1 } avssm_memory;

typedef struct {
    const void *data;          /* first pixel of the top row */
    int32_t width, height;     /* pixels */
    int64_t stride;            /* bytes from one row to the next (>= width * bytes per pixel) */
    avssm_pixel_format format;
    avssm_memory memory;       /* where data is */
} avssm_frame;

typedef struct {
    float x1, y1, x2, y2; /* the box in the frame's pixels */
    float score;          /* the best class's score, in [0, 1] */
    int32_t label;        /* its class index (avssm_detector_class_name gives the name) */
} avssm_detection;

/* avssm run's defaults: 0.3, 0.6, 2000, 300. */
typedef struct {
    float score_threshold;  /* detections scoring at most this are dropped */
    float iou_threshold;    /* a box overlapping a better one of its class by more than this is dropped */
    int32_t max_candidates; /* best-scoring boxes that enter NMS */
    int32_t max_detections; /* detections kept after NMS */
} avssm_postprocess_params;

/* Milliseconds of the last avssm_detector_detect, CUDA events for the GPU stages; names as avssm run's report. */
typedef struct {
    double preprocess_ms, inference_ms, postprocess_ms, end_to_end_ms;
} avssm_timing;

/* Memory in MiB, names as avssm run's report. unified_*: Jetson's shared memory (/proc/meminfo), -1 elsewhere. */
typedef struct {
    double engine_device_memory_mib; /* TensorRT's activation memory for the engine */
    double io_buffers_mib;           /* the detector's input, output, upload and table buffers */
    double gpu_used_mib;             /* device memory in use on the GPU (all processes) */
    double unified_total_mib, unified_available_mib;
} avssm_memory_report;

/* What the engine is (from its metadata and profile); strings valid while the detector is open. */
typedef struct {
    const char *model, *precision, *scan_op;
    int32_t classes;
    int32_t min_height, min_width, max_height, max_width; /* the frame sizes the engine takes */
} avssm_model_info;

typedef struct avssm_detector avssm_detector;

int avssm_infer_api_version(void);
/* The calling thread's last error, "" after a success. Valid until that thread's next call. */
const char *avssm_last_error(void);
void avssm_postprocess_default_params(avssm_postprocess_params *params);

/* One image's raw detector outputs, (candidates, 4) xyxy boxes and (candidates, classes) scores, fp32 host
 * memory, into at most `capacity` detections (>= params->max_detections), best first. params NULL: defaults. */
avssm_status avssm_postprocess(const float *boxes, const float *scores, int64_t candidates, int64_t classes,
                               const avssm_postprocess_params *params, avssm_detection *detections, int32_t capacity,
                               int32_t *count);

/* Opens `engine_path` and its sidecar `engine_path.json` (written by `avssm build`) with the TensorRT of this process
 * (or libnvinfer.so.<major>), registers avssm's plugin (libavssm_trt_plugin.so, beside this library) when the
 * engine has SelectiveScan nodes unless another component registered it, and allocates its buffers once. */
avssm_status avssm_detector_open(const char *engine_path, avssm_detector **detector);
/* Detects in one frame on `cuda_stream` (a cudaStream_t; NULL: the detector's own) and waits for the result. */
avssm_status avssm_detector_detect(avssm_detector *detector, const avssm_frame *frame,
                                   const avssm_postprocess_params *params, void *cuda_stream,
                                   avssm_detection *detections, int32_t capacity, int32_t *count);
avssm_status avssm_detector_timing(const avssm_detector *detector, avssm_timing *timing);
/* The class name of `label` (from the engine's metadata), or NULL. Valid while the detector is open. */
const char *avssm_detector_class_name(const avssm_detector *detector, int32_t label);
avssm_status avssm_detector_memory(const avssm_detector *detector, avssm_memory_report *memory);
avssm_status avssm_detector_info(const avssm_detector *detector, avssm_model_info *info);
void avssm_detector_close(avssm_detector *detector);

#ifdef __cplusplus
}
#endif

#endif
