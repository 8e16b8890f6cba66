#include "postprocess.hpp"

#include <algorithm>
#include <limits>
#include <numeric>

namespace avssm {
namespace infer {

avssm_postprocess_params defaultPostprocessParams() { return {0.3f, 0.6f, 2000, 300}; }

namespace {

// A box as OpenCV's Rect2d: corner, width and height in double, the width and height computed in fp32 (the
// Python runtime builds x, y, x2 - x1, y2 - y1 from fp32 boxes and hands them to OpenCV as doubles).
struct Rect {
    double x, y, w, h;
};

// OpenCV's rectOverlap for Rect2d: 1 - jaccardDistance, the distance in double, the overlap in float.
float overlap(Rect const& a, Rect const& b) {
    double const areaA = a.w * a.h, areaB = b.w * b.h;
    if (areaA + areaB <= std::numeric_limits<double>::epsilon()) return 1.f;  // distance 0: two empty boxes
    double const x1 = std::max(a.x, b.x), y1 = std::max(a.y, b.y);
    double const w = std::min(a.x + a.w, b.x + b.w) - x1, h = std::min(a.y + a.h, b.y + b.h) - y1;
    double const inter = (w <= 0 || h <= 0) ? 0.0 : w * h;
    double const distance = 1.0 - inter / (areaA + areaB - inter);
    return 1.f - static_cast<float>(distance);
}

}  // namespace

std::vector<avssm_detection> postprocess(float const* boxes, float const* scores, int64_t candidates, int64_t classes,
                                         avssm_postprocess_params const& params) {
    // Best class per box (the first of equal scores, as numpy's argmax); only scores above the threshold
    // survive (the Python runtime keeps >=, then OpenCV's NMS keeps >).
    std::vector<int64_t> keep;
    std::vector<float> best(static_cast<size_t>(candidates));
    std::vector<int32_t> label(static_cast<size_t>(candidates));
    for (int64_t i = 0; i < candidates; ++i) {
        float const* row = scores + i * classes;
        int64_t arg = 0;
        for (int64_t c = 1; c < classes; ++c) {
            if (row[c] > row[arg]) arg = c;
        }
        best[i] = row[arg];
        label[i] = static_cast<int32_t>(arg);
        if (best[i] > params.score_threshold) keep.push_back(i);
    }
    // Best first, the earlier box first among equal scores; the best max_candidates enter NMS.
    std::stable_sort(keep.begin(), keep.end(), [&](int64_t a, int64_t b) { return best[a] > best[b]; });
    if (static_cast<int64_t>(keep.size()) > params.max_candidates) keep.resize(static_cast<size_t>(params.max_candidates));

    // NMSBoxesBatched: each class's boxes moved by class * (max coordinate + 1), then one NMS over all.
    std::vector<Rect> rects(keep.size());
    double maxCoord = 0.0;
    for (size_t k = 0; k < keep.size(); ++k) {
        float const* b = boxes + keep[k] * 4;
        Rect& r = rects[k];
        r = {b[0], b[1], static_cast<double>(b[2] - b[0]), static_cast<double>(b[3] - b[1])};
        maxCoord = std::max({maxCoord, r.x, r.y, r.x + r.w, r.y + r.h});
    }
    for (size_t k = 0; k < keep.size(); ++k) {
        double const offset = label[keep[k]] * (maxCoord + 1);
        rects[k].x += offset;
        rects[k].y += offset;
    }
    std::vector<size_t> kept;
    for (size_t k = 0; k < keep.size() && static_cast<int64_t>(kept.size()) < params.max_detections; ++k) {
        bool survives = true;
        for (size_t j = 0; j < kept.size() && survives; ++j) survives = overlap(rects[k], rects[kept[j]]) <= params.iou_threshold;
        if (survives) kept.push_back(k);
    }
    std::vector<avssm_detection> out;
    out.reserve(kept.size());
    for (size_t k : kept) {
        int64_t const i = keep[k];
        float const* b = boxes + i * 4;
        out.push_back({b[0], b[1], b[2], b[3], best[i], label[i]});
    }
    return out;
}

}  // namespace infer
}  // namespace avssm
