// The end-of-run report of avssm run (avssm/runtime/report.py) for C++ programs over avssm_infer: latency per
// stage (p50/p90/p99/max as numpy's percentiles), Jetson's unified memory, and the same human-readable table.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace avssm {
namespace infer {

// The stages in the report's order.
extern char const* const kStages[6];  // capture_wait, preprocess, inference, postprocess, end_to_end, from_stamp

// numpy.percentile(values, q) (linear interpolation); values need not be sorted. NaN when empty.
double percentile(std::vector<double> values, double q);

// Jetson's unified memory in MiB from /proc/meminfo (MemTotal, MemAvailable); leaves both as they are elsewhere.
void unifiedMemory(double& total, double& available);

struct RunSummary {
    std::string model, precision, scanOp;
    std::string backend{"avssm_infer"}, device{"cuda"}, reason;
    int processed{0}, warmup{0}, dropped{0}, captured{0}, unreadable{0};
    double throughputFps{0};
    std::map<std::string, std::vector<double>> latencyMs;  // stage -> one value per timed frame
    std::vector<std::pair<std::string, double>> memory;    // in the order printed
    std::string error;
};

// avssm run's table (report.format_table) for `run`.
std::string formatTable(RunSummary const& run);

}  // namespace infer
}  // namespace avssm
