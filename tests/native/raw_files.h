// Raw arrays in files, for the programs here that run kernels' source on the CPU (scan_on_cpu, fused_on_cpu).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace raw_files {

// The bytes of `path`, which must hold exactly `bytes`; an absent optional file gives none. Anything else exits 2
// with a line naming the file.
inline std::vector<char> read(const std::string &path, size_t bytes, bool optional) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        if (optional) return {};
        std::fprintf(stderr, "%s: cannot be read\n", path.c_str());
        std::exit(2);
    }
    std::vector<char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (data.size() != bytes) {
        std::fprintf(stderr, "%s: %zu bytes, expected %zu\n", path.c_str(), data.size(), bytes);
        std::exit(2);
    }
    return data;
}

}  // namespace raw_files
