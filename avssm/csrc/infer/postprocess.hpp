// Postprocessing of a detector's raw outputs, the rules of avssm's Python runtime
// (avssm/runtime/pipeline.py::postprocess): best class per box, score threshold, the best max_candidates,
// class-aware NMS as OpenCV's NMSBoxesBatched computes it (which the Python runtime calls), the first
// max_detections. Plain C++, no GPU.
#pragma once

#include "avssm/infer.h"

#include <cstdint>
#include <vector>

namespace avssm {
namespace infer {

avssm_postprocess_params defaultPostprocessParams();

// `boxes` (candidates, 4) xyxy and `scores` (candidates, classes), row-major fp32: the detections, best first.
std::vector<avssm_detection> postprocess(float const* boxes, float const* scores, int64_t candidates, int64_t classes,
                                         avssm_postprocess_params const& params);

}  // namespace infer
}  // namespace avssm
