// The harness programs' checks (plugin_api_check, plugin_loader_check, plugin_gpu_check): one line per failed
// check, then "N passed, M failed", which tests/test_native.py reads.
#pragma once

#include <cstdio>
#include <string>

namespace checks {

inline int passed = 0, failed = 0;

inline bool check(bool ok, std::string const& what) {
    if (ok) {
        ++passed;
    } else {
        ++failed;
        std::printf("FAILED: %s\n", what.c_str());
    }
    return ok;
}

// Prints the count (and `note`); the program's exit status.
inline int report(char const* note = "") {
    std::printf("%d passed, %d failed%s\n", passed, failed, note);
    return failed == 0 ? 0 : 1;
}

}  // namespace checks
