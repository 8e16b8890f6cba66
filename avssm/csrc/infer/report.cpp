#include "report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <sys/stat.h>

namespace avssm {
namespace infer {

char const* const kStages[6] = {"capture_wait", "preprocess", "inference", "postprocess", "end_to_end",
                                 "from_stamp"};

double percentile(std::vector<double> values, double q) {
    if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
    std::sort(values.begin(), values.end());
    double const position = q / 100.0 * static_cast<double>(values.size() - 1);
    size_t const below = static_cast<size_t>(std::floor(position));
    size_t const above = std::min(below + 1, values.size() - 1);
    double const fraction = position - static_cast<double>(below);
    // numpy's linear method: lerp that is exact at both ends
    double const a = values[below], b = values[above], d = b - a;
    return fraction >= 0.5 ? b - d * (1.0 - fraction) : a + d * fraction;
}

void unifiedMemory(double& total, double& available) {
    struct stat info {};
    if (stat("/etc/nv_tegra_release", &info) != 0 && stat("/sys/module/tegra_fuse", &info) != 0) return;
    std::ifstream meminfo("/proc/meminfo");
    std::string key;
    double kib = 0;
    std::string unit;
    while (meminfo >> key >> kib >> unit) {
        if (key == "MemTotal:") total = kib / 1024.0;
        if (key == "MemAvailable:") available = kib / 1024.0;
    }
}

namespace {

std::string format(char const* pattern, double value) {
    char text[64];
    std::snprintf(text, sizeof text, pattern, value);
    return text;
}

}  // namespace

std::string formatTable(RunSummary const& run) {
    std::ostringstream out;
    out << "model " << run.model << " (" << run.precision << ", " << run.scanOp << " form) on " << run.backend << " ["
        << run.device << "]" << (run.reason.empty() ? "" : " - " + run.reason) << "\n";
    out << "frames: " << run.processed << " processed after " << run.warmup << " warm-up, " << run.dropped
        << " dropped, " << run.captured << " captured"
        << (run.unreadable ? ", " + std::to_string(run.unreadable) + " unreadable skipped" : "")
        << "; throughput " << format("%.2f", run.throughputFps) << " fps\n";
    char header[80];
    std::snprintf(header, sizeof header, "%-14s%10s%10s%10s%10s", "stage", "p50 ms", "p90 ms", "p99 ms", "max ms");
    out << header << "\n";
    for (char const* stage : kStages) {
        auto const found = run.latencyMs.find(stage);
        if (found == run.latencyMs.end() || found->second.empty()) continue;
        std::vector<double> const& v = found->second;
        char line[120];
        std::snprintf(line, sizeof line, "%-14s%10.1f%10.1f%10.1f%10.1f", stage, percentile(v, 50), percentile(v, 90),
                      percentile(v, 99), *std::max_element(v.begin(), v.end()));
        out << line << "\n";
    }
    out << "memory: ";
    for (size_t i = 0; i < run.memory.size(); ++i) {
        out << (i ? ", " : "") << run.memory[i].first << " " << format("%.0f", run.memory[i].second);
    }
    if (!run.error.empty()) out << "\nstopped: " << run.error;
    return out.str();
}

}  // namespace infer
}  // namespace avssm
