// avssm run's loop in C++ over avssm_infer, the pattern for a C++ / ROS 2 node: frames from a video (OpenCV) ->
// avssm_detector_detect -> detections; at the end the same report table as `avssm run`.
//
//   avssm_run_video ENGINE VIDEO [--warmup N] [--max-frames N] [--score-threshold T] [--iou-threshold T]
//
// Exit status: 0 done, 2 bad arguments or an unreadable video before any work, 1 a fault while running.
#include <avssm/infer.h>

#include "report.hpp"

#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

bool number(char const* text, double& value) {
    char* end = nullptr;
    value = std::strtod(text, &end);
    return end != text && *end == '\0';
}

int usage(char const* program, std::string const& problem) {
    std::fprintf(stderr, "%s: %s\nusage: %s ENGINE VIDEO [--warmup N] [--max-frames N] [--score-threshold T] "
                         "[--iou-threshold T]\n", program, problem.c_str(), program);
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) return usage(argv[0], "ENGINE and VIDEO are required");
    int warmup = 3, maxFrames = 0;
    avssm_postprocess_params params;
    avssm_postprocess_default_params(&params);
    for (int i = 3; i < argc; i += 2) {
        std::string const flag = argv[i];
        double value = 0;
        if (i + 1 >= argc || !number(argv[i + 1], value)) return usage(argv[0], flag + " needs a number");
        if (flag == "--warmup" && value >= 0) warmup = static_cast<int>(value);
        else if (flag == "--max-frames" && value >= 0) maxFrames = static_cast<int>(value);
        else if (flag == "--score-threshold" && value >= 0 && value <= 1) params.score_threshold = static_cast<float>(value);
        else if (flag == "--iou-threshold" && value >= 0 && value <= 1) params.iou_threshold = static_cast<float>(value);
        else return usage(argv[0], flag + " " + argv[i + 1] + ": unknown flag or value out of range");
    }
    cv::VideoCapture video(argv[2]);
    if (!video.isOpened()) return usage(argv[0], std::string("video ") + argv[2] + ": cannot be opened");

    avssm_detector* detector = nullptr;
    if (avssm_detector_open(argv[1], &detector) != AVSSM_OK) {
        std::fprintf(stderr, "%s\n", avssm_last_error());
        return 1;
    }
    avssm_model_info info{};
    avssm_detector_info(detector, &info);
    avssm::infer::RunSummary run;
    run.model = info.model;
    run.precision = info.precision;
    run.scanOp = info.scan_op;
    std::vector<avssm_detection> found(static_cast<size_t>(params.max_detections));
    std::chrono::steady_clock::time_point firstTimed;
    cv::Mat frame;
    while (maxFrames == 0 || run.processed < maxFrames) {
        auto const waitStart = std::chrono::steady_clock::now();
        if (!video.read(frame)) break;
        ++run.captured;
        double const waitMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - waitStart).count();
        avssm_frame const image{frame.data, frame.cols, frame.rows, static_cast<int64_t>(frame.step), AVSSM_PIXEL_BGR8,
                                AVSSM_MEMORY_HOST};
        int32_t count = 0;
        if (avssm_detector_detect(detector, &image, &params, nullptr, found.data(), params.max_detections, &count) != AVSSM_OK) {
            run.error = avssm_last_error();
            break;
        }
        if (run.warmup < warmup) {
            ++run.warmup;
            continue;
        }
        if (run.processed++ == 0) firstTimed = waitStart;
        avssm_timing t{};
        avssm_detector_timing(detector, &t);
        run.latencyMs["capture_wait"].push_back(waitMs);
        run.latencyMs["preprocess"].push_back(t.preprocess_ms);
        run.latencyMs["inference"].push_back(t.inference_ms);
        run.latencyMs["postprocess"].push_back(t.postprocess_ms);
        run.latencyMs["end_to_end"].push_back(t.end_to_end_ms);
    }
    if (run.processed > 0) {
        double const seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - firstTimed).count();
        run.throughputFps = seconds > 0 ? run.processed / seconds : 0.0;
    }
    avssm_memory_report memory{};
    if (avssm_detector_memory(detector, &memory) == AVSSM_OK) {
        run.memory = {{"engine_device_memory_mib", memory.engine_device_memory_mib},
                      {"io_buffers_mib", memory.io_buffers_mib},
                      {"gpu_used_mib", memory.gpu_used_mib}};
        if (memory.unified_total_mib >= 0) {
            run.memory.emplace_back("unified_total_mib", memory.unified_total_mib);
            run.memory.emplace_back("unified_available_mib", memory.unified_available_mib);
        }
    }
    avssm_detector_close(detector);
    std::printf("%s\n", avssm::infer::formatTable(run).c_str());
    return run.error.empty() ? 0 : 1;
}
