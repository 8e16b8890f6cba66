#include "metadata.hpp"

#include "errors.hpp"
#include "json.hpp"

#include <fstream>
#include <sstream>

namespace avssm {
namespace infer {

Metadata readSidecar(std::string const& path, std::string const& engine) {
    std::ifstream file(path);
    if (!file) {
        throw Error(AVSSM_ERROR_FILE, "engine " + engine + ": no " + path + " beside it (build engines with avssm build)");
    }
    std::stringstream text;
    text << file.rdbuf();
    Json root;
    try {
        root = parseJson(text.str());
    } catch (std::exception const& e) {
        throw Error(AVSSM_ERROR_FILE, path + ": not JSON (" + e.what() + "); rebuild the engine with avssm build");
    }
    Json const& meta = root["avssm"];
    auto field = [&](Json const& value, char const* name, Json::Type type) -> Json const& {
        if (value.type != type) {
            throw Error(AVSSM_ERROR_FILE, path + ": its avssm metadata lacks " + name + "; rebuild the engine with avssm build");
        }
        return value;
    };
    Metadata m;
    m.model = field(meta["model"], "model", Json::Type::kString).string;
    m.task = field(meta["task"], "task", Json::Type::kString).string;
    m.scanOp = field(meta["scan_op"], "scan_op", Json::Type::kString).string;
    m.precision = field(meta["precision"], "precision", Json::Type::kString).string;
    if (m.task != "detection") {
        throw Error(AVSSM_ERROR_FILE, "engine " + engine + ": model " + m.model + " is a " + m.task +
                                          " model; avssm_infer runs detectors");
    }
    for (Json const& name : field(meta["class_names"], "class_names", Json::Type::kArray).array) {
        m.classNames.push_back(name.string);
    }
    Json const& input = field(meta["input"], "input", Json::Type::kObject);
    Json const& mean = field(input["mean"], "input.mean", Json::Type::kArray);
    Json const& std = field(input["std"], "input.std", Json::Type::kArray);
    if (mean.array.size() != 3 || std.array.size() != 3) {
        throw Error(AVSSM_ERROR_FILE, path + ": input.mean and input.std must have 3 values each");
    }
    for (int c = 0; c < 3; ++c) {
        m.normalization.mean[c] = static_cast<float>(mean.array[c].number);
        m.normalization.std[c] = static_cast<float>(std.array[c].number);
    }
    if (input["scale"].type == Json::Type::kNumber) m.normalization.scale = static_cast<float>(input["scale"].number);
    m.normalization.rgb = input["color"].string != "BGR";
    m.halfInput = input["dtype"].string == "float16";
    m.tensorrt = root["tensorrt"].string;
    m.gpu = root["gpu"].string;
    m.pluginLibrary = root["plugin"]["library"].string;
    return m;
}

}  // namespace infer
}  // namespace avssm
