// What avssm_infer's C++ objects throw: a status of avssm/infer.h and one line naming the thing and the fix. The C
// API (c_api.cpp) turns it into a return value and avssm_last_error().
#pragma once

#include "avssm/infer.h"

#include <stdexcept>
#include <string>

namespace avssm {
namespace infer {

struct Error : std::runtime_error {
    Error(avssm_status status, std::string const& message) : std::runtime_error(message), status(status) {}
    avssm_status status;
};

}  // namespace infer
}  // namespace avssm
