// The little JSON avssm_infer reads (an engine's sidecar, written by `avssm build`): a value tree and a parser
// that reports the first problem with its byte offset. Not a general library: no writer, numbers as double.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace avssm {
namespace infer {

struct Json {
    enum class Type { kNull, kBool, kNumber, kString, kArray, kObject } type{Type::kNull};
    bool boolean{false};
    double number{0};
    std::string string;
    std::vector<Json> array;
    std::map<std::string, Json> object;

    // The member `key` of an object, or a null value when there is none (or this is not an object).
    Json const& operator[](std::string const& key) const;
    bool isNull() const { return type == Type::kNull; }
};

// Parses `text`; throws std::runtime_error("offset N: what") on malformed input.
Json parseJson(std::string const& text);

}  // namespace infer
}  // namespace avssm
