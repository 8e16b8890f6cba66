// The C API of avssm/csrc/include/avssm/infer.h: argument checks, the per-thread last error, and calls into
// the C++ objects. The detector functions need the TensorRT build (AVSSM_INFER_WITH_TENSORRT, detector.cpp);
// without it they say so.
#include "avssm/infer.h"

#include "errors.hpp"
#include "postprocess.hpp"

#ifdef AVSSM_INFER_WITH_TENSORRT
#include "detector.hpp"
#endif

#include <algorithm>
#include <exception>
#include <string>

using avssm::infer::Error;

namespace {

thread_local std::string gLastError;

avssm_status fail(avssm_status status, std::string message) {
    gLastError = std::move(message);
    return status;
}

avssm_status ok() {
    gLastError.clear();
    return AVSSM_OK;
}

// Runs `body`, turning what it throws into a status and the last error: nothing crosses the C API.
template <typename Body>
avssm_status guarded(Body&& body) {
    try {
        return body();
    } catch (Error const& e) {
        return fail(e.status, e.what());
    } catch (std::bad_alloc const&) {
        return fail(AVSSM_ERROR_ARGUMENT, "out of host memory");
    } catch (std::exception const& e) {
        return fail(AVSSM_ERROR_ARGUMENT, e.what());
    }
}

avssm_status checkParams(avssm_postprocess_params const& p, int32_t capacity) {
    if (!(p.score_threshold >= 0.f && p.score_threshold <= 1.f) || !(p.iou_threshold >= 0.f && p.iou_threshold <= 1.f)) {
        return fail(AVSSM_ERROR_ARGUMENT, "params: score_threshold and iou_threshold must be in [0, 1]");
    }
    if (p.max_candidates < 1 || p.max_detections < 1) {
        return fail(AVSSM_ERROR_ARGUMENT, "params: max_candidates and max_detections must be at least 1");
    }
    if (capacity < p.max_detections) {
        return fail(AVSSM_ERROR_ARGUMENT, "capacity " + std::to_string(capacity) + " is less than params' max_detections " +
                                              std::to_string(p.max_detections) + ": pass room for that many detections");
    }
    return AVSSM_OK;
}

}  // namespace

extern "C" {

int avssm_infer_api_version(void) { return AVSSM_INFER_API_VERSION; }

const char* avssm_last_error(void) { return gLastError.c_str(); }

void avssm_postprocess_default_params(avssm_postprocess_params* params) {
    if (params) *params = avssm::infer::defaultPostprocessParams();
}

avssm_status avssm_postprocess(const float* boxes, const float* scores, int64_t candidates, int64_t classes,
                               const avssm_postprocess_params* params, avssm_detection* detections, int32_t capacity,
                               int32_t* count) {
    if (!count || !detections || (candidates > 0 && (!boxes || !scores))) {
        return fail(AVSSM_ERROR_ARGUMENT, "avssm_postprocess: boxes, scores, detections and count must not be NULL");
    }
    if (candidates < 0 || classes < 1) {
        return fail(AVSSM_ERROR_ARGUMENT, "avssm_postprocess: candidates must be >= 0 and classes >= 1, got " +
                                              std::to_string(candidates) + " and " + std::to_string(classes));
    }
    avssm_postprocess_params const p = params ? *params : avssm::infer::defaultPostprocessParams();
    *count = 0;
    if (avssm_status const s = checkParams(p, capacity)) return s;
    return guarded([&] {
        auto const found = avssm::infer::postprocess(boxes, scores, candidates, classes, p);
        std::copy(found.begin(), found.end(), detections);
        *count = static_cast<int32_t>(found.size());
        return ok();
    });
}

#ifdef AVSSM_INFER_WITH_TENSORRT

struct avssm_detector {
    avssm::infer::Detector impl;
};

avssm_status avssm_detector_open(const char* engine_path, avssm_detector** detector) {
    if (!engine_path || !detector) return fail(AVSSM_ERROR_ARGUMENT, "avssm_detector_open: engine_path and detector must not be NULL");
    *detector = nullptr;
    return guarded([&] {
        *detector = new avssm_detector{avssm::infer::Detector(engine_path)};
        return ok();
    });
}

avssm_status avssm_detector_detect(avssm_detector* detector, const avssm_frame* frame, const avssm_postprocess_params* params,
                                   void* cuda_stream, avssm_detection* detections, int32_t capacity, int32_t* count) {
    if (!detector || !frame || !detections || !count) {
        return fail(AVSSM_ERROR_ARGUMENT, "avssm_detector_detect: detector, frame, detections and count must not be NULL");
    }
    avssm_postprocess_params const p = params ? *params : avssm::infer::defaultPostprocessParams();
    *count = 0;
    if (avssm_status const s = checkParams(p, capacity)) return s;
    return guarded([&] {
        auto const found = detector->impl.detect(*frame, p, static_cast<cudaStream_t>(cuda_stream));
        std::copy(found.begin(), found.end(), detections);
        *count = static_cast<int32_t>(found.size());
        return ok();
    });
}

avssm_status avssm_detector_timing(const avssm_detector* detector, avssm_timing* timing) {
    if (!detector || !timing) return fail(AVSSM_ERROR_ARGUMENT, "avssm_detector_timing: detector and timing must not be NULL");
    *timing = detector->impl.timing();
    return ok();
}

const char* avssm_detector_class_name(const avssm_detector* detector, int32_t label) {
    if (!detector) return nullptr;
    auto const& names = detector->impl.metadata().classNames;
    return label >= 0 && static_cast<size_t>(label) < names.size() ? names[static_cast<size_t>(label)].c_str() : nullptr;
}

avssm_status avssm_detector_memory(const avssm_detector* detector, avssm_memory_report* memory) {
    if (!detector || !memory) return fail(AVSSM_ERROR_ARGUMENT, "avssm_detector_memory: detector and memory must not be NULL");
    return guarded([&] {
        *memory = detector->impl.memory();
        return ok();
    });
}

avssm_status avssm_detector_info(const avssm_detector* detector, avssm_model_info* info) {
    if (!detector || !info) return fail(AVSSM_ERROR_ARGUMENT, "avssm_detector_info: detector and info must not be NULL");
    *info = detector->impl.info();
    return ok();
}

void avssm_detector_close(avssm_detector* detector) { delete detector; }

#else

struct avssm_detector {};

static avssm_status noTensorRT() {
    return fail(AVSSM_ERROR_UNSUPPORTED, "this avssm_infer was built without TensorRT and CUDA: build it with "
                                         "avssm build-plugins --tensorrt-root <TensorRT>");
}

avssm_status avssm_detector_open(const char*, avssm_detector** detector) {
    if (detector) *detector = nullptr;
    return noTensorRT();
}
avssm_status avssm_detector_detect(avssm_detector*, const avssm_frame*, const avssm_postprocess_params*, void*,
                                   avssm_detection*, int32_t, int32_t* count) {
    if (count) *count = 0;
    return noTensorRT();
}
avssm_status avssm_detector_timing(const avssm_detector*, avssm_timing*) { return noTensorRT(); }
const char* avssm_detector_class_name(const avssm_detector*, int32_t) { return nullptr; }
avssm_status avssm_detector_memory(const avssm_detector*, avssm_memory_report*) { return noTensorRT(); }
avssm_status avssm_detector_info(const avssm_detector*, avssm_model_info*) { return noTensorRT(); }
void avssm_detector_close(avssm_detector*) {}

#endif
}
