// Calls libavssm_trt_plugin.so the way a TensorRT process does before and around an engine: loads it,
// takes its creator from getCreators, creates plugins from fields, round-trips the serialized fields and
// asks the build- and run-time questions that need no GPU (formats, types, shapes, workspace). TensorRT's
// own runtime is not involved: only its headers, so this builds where they are (tests/test_native.py).
//
//   plugin_api_check PLUGIN_LIB KERNEL_LIB    prints one line per failed check and "N passed, M failed"
#include "NvInferRuntime.h"

#include "checks.h"

#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace {

using checks::check;

// What the plugin logs, as a TensorRT process would receive it.
struct Logger : ILogger {
    std::vector<std::string> errors;
    void log(Severity severity, AsciiChar const* msg) noexcept override {
        if (severity <= Severity::kERROR) errors.emplace_back(msg);
    }
    bool lastMentions(char const* text) const { return !errors.empty() && errors.back().find(text) != std::string::npos; }
};

struct Finder : ILoggerFinder {
    Logger logger;
    ILogger* findLogger() noexcept override { return &logger; }
};

struct Field {
    char const* name;
    int32_t value;
    PluginFieldType type = PluginFieldType::kINT32;
};

// Fields as TensorRT's ONNX parser passes a node's int attributes (one kINT32 each).
struct Fields {
    std::vector<int32_t> values;
    std::vector<PluginField> fields;
    PluginFieldCollection collection{};
    explicit Fields(std::vector<Field> const& given) {
        values.reserve(given.size());
        for (Field const& f : given) {
            values.push_back(f.value);
            fields.emplace_back(f.name, &values.back(), f.type, 1);
        }
        collection.nbFields = static_cast<int32_t>(fields.size());
        collection.fields = fields.data();
    }
};

Fields nodeFields(int32_t hasD, int32_t hasZ, int32_t hasBias, int32_t softplus) {
    return Fields({{"has_D", hasD}, {"has_z", hasZ}, {"has_delta_bias", hasBias}, {"delta_softplus", softplus}});
}

Dims dims(std::vector<int64_t> const& values) {
    Dims d{};
    d.nbDims = static_cast<int32_t>(values.size());
    for (size_t i = 0; i < values.size(); ++i) d.d[i] = values[i];
    return d;
}

PluginTensorDesc desc(std::vector<int64_t> const& shape, DataType type, TensorFormat format = TensorFormat::kLINEAR) {
    PluginTensorDesc d{};
    d.dims = dims(shape);
    d.type = type;
    d.format = format;
    d.scale = -1.f;
    return d;
}

DynamicPluginTensorDesc dynamic(PluginTensorDesc const& d) {
    DynamicPluginTensorDesc out{};
    out.desc = d;
    out.min = out.max = out.opt = d.dims;
    return out;
}

int32_t fieldValue(PluginFieldCollection const* fc, char const* name) {
    for (int32_t i = 0; fc && i < fc->nbFields; ++i) {
        if (fc->fields[i].name && std::strcmp(fc->fields[i].name, name) == 0 && fc->fields[i].data) {
            return *static_cast<int32_t const*>(fc->fields[i].data);
        }
    }
    return -1;
}

using FusedWorkspaceSize = size_t (*)(int, int64_t, int64_t, int64_t, int64_t, int, int);

// Version 2 (the fused layouts): the creator's fields and their errors, then a cross-2d (VMamba) and a
// bidirectional (Vim) plugin: version, serialized layout, workspace, shape checks naming the tensor.
void checkFusedCreator(IPluginCreatorV3One* fused, IPluginCreatorV3One* plain, Logger const& log,
                       FusedWorkspaceSize fusedWorkspaceSize) {
    check(std::strcmp(fused->getPluginName(), "SelectiveScan") == 0 && std::strcmp(fused->getPluginVersion(), "2") == 0 &&
              std::strcmp(fused->getPluginNamespace(), "avssm") == 0,
          "the second creator is SelectiveScan version 2, namespace avssm");
    PluginFieldCollection const* names = fused->getFieldNames();
    std::vector<std::string> listed;
    for (int32_t i = 0; names && i < names->nbFields; ++i) listed.emplace_back(names->fields[i].name);
    check(listed == std::vector<std::string>{"has_D", "has_z", "has_delta_bias", "delta_softplus", "layout"},
          "version 2 lists the four flags and layout");
    Fields noLayout = nodeFields(1, 0, 1, 1);
    check(fused->createPlugin("scan", &noLayout.collection, TensorRTPhase::kBUILD) == nullptr && log.lastMentions("layout"),
          "version 2 without layout: null, naming it");
    Fields layoutZero({{"has_D", 1}, {"has_z", 0}, {"has_delta_bias", 1}, {"delta_softplus", 1}, {"layout", 0}});
    check(fused->createPlugin("scan", &layoutZero.collection, TensorRTPhase::kBUILD) == nullptr && log.lastMentions("got 0"),
          "version 2 with layout 0: null");
    Fields crossFields({{"has_D", 1}, {"has_z", 0}, {"has_delta_bias", 1}, {"delta_softplus", 1}, {"layout", 1}});
    check(plain->createPlugin("scan", &crossFields.collection, TensorRTPhase::kBUILD) == nullptr &&
              log.lastMentions("version 2"),
          "version 1 given a fused layout: null, saying fused layouts are version 2");
    Fields gatedCross({{"has_D", 1}, {"has_z", 1}, {"has_delta_bias", 1}, {"delta_softplus", 1}, {"layout", 1}});
    check(fused->createPlugin("scan", &gatedCross.collection, TensorRTPhase::kBUILD) == nullptr && log.lastMentions("has_z"),
          "cross-2d with a gate: null");

    // VMamba-T stage 1 at 1080p: batch 1, dim 192, a 270 x 480 map, N 1; D and delta_bias.
    IPluginV3* cross = fused->createPlugin("scan", &crossFields.collection, TensorRTPhase::kBUILD);
    check(cross != nullptr, "a cross-2d plugin");
    if (cross) {
        auto* core = static_cast<IPluginV3OneCore*>(cross->getCapabilityInterface(PluginCapabilityType::kCORE));
        auto* build = static_cast<IPluginV3OneBuild*>(cross->getCapabilityInterface(PluginCapabilityType::kBUILD));
        auto* runtime = static_cast<IPluginV3OneRuntime*>(cross->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
        check(std::strcmp(core->getPluginVersion(), "2") == 0, "the cross-2d plugin is version 2");
        PluginFieldCollection const* serialized = runtime->getFieldsToSerialize();
        check(fieldValue(serialized, "layout") == 1 && fieldValue(serialized, "has_z") == 0, "it serializes layout 1");
        int64_t const b = 1, d = 192, H = 270, W = 480, N = 1;
        std::vector<PluginTensorDesc> in = {desc({b, d, H, W}, DataType::kHALF), desc({b, 4, d, H, W}, DataType::kHALF),
                                            desc({4 * d, N}, DataType::kFLOAT), desc({b, 4, N, H, W}, DataType::kHALF),
                                            desc({b, 4, N, H, W}, DataType::kHALF), desc({4 * d}, DataType::kFLOAT),
                                            desc({4 * d}, DataType::kFLOAT)};
        PluginTensorDesc out = desc({b, d, H, W}, DataType::kHALF);
        check(runtime->onShapeChange(in.data(), 7, &out, 1) == 0, "cross-2d: consistent shapes accepted");
        struct Bad {
            int pos;
            std::vector<int64_t> shape;
            char const* name;
        };
        for (Bad const& bad : {Bad{0, {b, d, H * W}, "u"}, Bad{1, {b, 4, d, W, H}, "delta"}, Bad{2, {d, N}, "A"},
                               Bad{3, {b, 4, N, H, W + 1}, "B"}, Bad{4, {b, 2, N, H, W}, "C"}, Bad{5, {d}, "D"},
                               Bad{6, {4 * d + 1}, "delta_bias"}}) {
            std::vector<PluginTensorDesc> wrong = in;
            wrong[bad.pos].dims = dims(bad.shape);
            std::string const expect = std::string(bad.name) + " must be";
            check(runtime->onShapeChange(wrong.data(), 7, &out, 1) == -1 && log.lastMentions(expect.c_str()),
                  std::string("cross-2d: inconsistent ") + bad.name + " rejected with a message naming it");
        }
        std::vector<DynamicPluginTensorDesc> dyn;
        for (auto const& t : in) dyn.push_back(dynamic(t));
        DynamicPluginTensorDesc dynOut = dynamic(out);
        int32_t const sms = fieldValue(serialized, "workspace_multiprocessors");
        check(build->getWorkspaceSize(dyn.data(), 7, &dynOut, 1) == fusedWorkspaceSize(1, b, d, H * W, N, 1, sms) &&
                  fusedWorkspaceSize(1, b, d, H * W, N, 1, sms) >= static_cast<size_t>(3 * 4 * b * d * H * W * 2),
              "cross-2d: the workspace holds the four directions' copies of u and delta and their outputs, fp16");
        std::vector<DynamicPluginTensorDesc> dynamicShapes = dyn;
        dynamicShapes[0].desc.dims = dims({-1, d, -1, -1});
        for (int pos : {1}) dynamicShapes[pos].desc.dims = dims({-1, 4, d, -1, -1});
        for (int pos : {3, 4}) dynamicShapes[pos].desc.dims = dims({-1, 4, N, -1, -1});
        check(build->configurePlugin(dynamicShapes.data(), 7, &dynOut, 1) == 0, "cross-2d: dynamic batch, H and W");
        delete cross;
    }

    // Vim-S at 1080p: batch 1, dim 768 (two directions of 384), L 8161, N 16; D, z and delta_bias.
    Fields bidirectionalFields({{"has_D", 1}, {"has_z", 1}, {"has_delta_bias", 1}, {"delta_softplus", 1}, {"layout", 2}});
    IPluginV3* bidirectional = fused->createPlugin("scan", &bidirectionalFields.collection, TensorRTPhase::kBUILD);
    check(bidirectional != nullptr, "a bidirectional plugin");
    if (bidirectional) {
        auto* runtime =
            static_cast<IPluginV3OneRuntime*>(bidirectional->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
        int64_t const b = 1, d = 384, L = 8161, N = 16;
        std::vector<PluginTensorDesc> in = {desc({b, 2 * d, L}, DataType::kFLOAT), desc({b, 2 * d, L}, DataType::kFLOAT),
                                            desc({2 * d, N}, DataType::kFLOAT),    desc({b, 2, N, L}, DataType::kFLOAT),
                                            desc({b, 2, N, L}, DataType::kFLOAT),  desc({2 * d}, DataType::kFLOAT),
                                            desc({b, d, L}, DataType::kFLOAT),     desc({2 * d}, DataType::kFLOAT)};
        PluginTensorDesc out = desc({b, d, L}, DataType::kFLOAT);
        check(runtime->onShapeChange(in.data(), 8, &out, 1) == 0, "bidirectional: consistent shapes accepted");
        std::vector<PluginTensorDesc> wrong = in;
        wrong[6].dims = dims({b, 2 * d, L});
        check(runtime->onShapeChange(wrong.data(), 8, &out, 1) == -1 && log.lastMentions("z must be"),
              "bidirectional: a z of u's width rejected, naming z");
        wrong = in;
        wrong[0].dims = dims({b, 2 * d + 1, L});
        check(runtime->onShapeChange(wrong.data(), 8, &out, 1) == -1 && log.lastMentions("u must be"),
              "bidirectional: an odd channel count rejected, naming u");
        delete bidirectional;
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s PLUGIN_LIB KERNEL_LIB\n", argv[0]);
        return 2;
    }
    void* plugin = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    void* kernels = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
    if (!plugin || !kernels) {
        std::fprintf(stderr, "cannot load: %s\n", dlerror());
        return 2;
    }
    using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);
    using SetLoggerFinder = void (*)(ILoggerFinder*);
    using WorkspaceSize = size_t (*)(int64_t, int64_t, int64_t, int64_t, int);
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(plugin, "getCreators"));
    auto setLoggerFinder = reinterpret_cast<SetLoggerFinder>(dlsym(plugin, "setLoggerFinder"));
    auto workspaceSize = reinterpret_cast<WorkspaceSize>(dlsym(kernels, "avssm_selective_scan_workspace_size"));
    auto fusedWorkspaceSize = reinterpret_cast<FusedWorkspaceSize>(dlsym(kernels, "avssm_fused_scan_workspace_size"));
    if (!getCreators || !setLoggerFinder || !workspaceSize || !fusedWorkspaceSize) {
        std::fprintf(stderr, "missing entry points\n");
        return 2;
    }

    auto getPluginCreators = reinterpret_cast<GetCreators>(dlsym(plugin, "getPluginCreators"));
    int32_t nbV1 = -1;
    IPluginCreatorInterface* const* v1 = getPluginCreators ? getPluginCreators(nbV1) : nullptr;
    check(getPluginCreators && nbV1 == 0 && v1 == nullptr,
          "getPluginCreators (the V1 entry point) lists no creator: the library has no IPluginCreator");

    int32_t nbCreators = 0;
    IPluginCreatorInterface* const* creators = getCreators(nbCreators);
    check(nbCreators == 2 && creators && creators[0] && creators[1], "getCreators gives two creators (versions 1, 2)");
    if (nbCreators != 2 || !creators || !creators[0] || !creators[1]) return 1;
    check(std::strcmp(creators[0]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0, "the creator is IPluginCreatorV3One");
    auto* creator = static_cast<IPluginCreatorV3One*>(creators[0]);
    check(std::strcmp(creator->getPluginName(), "SelectiveScan") == 0 &&
              std::strcmp(creator->getPluginVersion(), "1") == 0 &&
              std::strcmp(creator->getPluginNamespace(), "avssm") == 0,
          "name, version and namespace are the exported node's");

    // Before any logger finder (a C++ program that linked the library): errors go to stderr, nothing crashes.
    check(creator->createPlugin("scan", nullptr, TensorRTPhase::kBUILD) == nullptr, "no fields: null");

    Finder finder;
    setLoggerFinder(&finder);
    Logger const& log = finder.logger;

    PluginFieldCollection const* names = creator->getFieldNames();
    std::vector<std::string> listed;
    for (int32_t i = 0; names && i < names->nbFields; ++i) listed.emplace_back(names->fields[i].name);
    check(listed == std::vector<std::string>{"has_D", "has_z", "has_delta_bias", "delta_softplus"},
          "getFieldNames lists the node's four attributes (and nothing the parser would miss on the node)");

    // Bad fields: null plugin and an error naming the field.
    {
        Fields missing({{"has_D", 1}, {"has_delta_bias", 1}, {"delta_softplus", 1}});
        check(creator->createPlugin("scan", &missing.collection, TensorRTPhase::kBUILD) == nullptr && log.lastMentions("has_z"),
              "a missing field: null, and the error names it");
        Fields wrongType({{"has_D", 1}, {"has_z", 0}, {"has_delta_bias", 1}, {"delta_softplus", 1, PluginFieldType::kFLOAT32}});
        check(creator->createPlugin("scan", &wrongType.collection, TensorRTPhase::kBUILD) == nullptr &&
                  log.lastMentions("delta_softplus") && log.lastMentions("INT32"),
              "a field of the wrong type: null, and the error names it");
        Fields outOfRange = nodeFields(1, 2, 1, 1);
        check(creator->createPlugin("scan", &outOfRange.collection, TensorRTPhase::kBUILD) == nullptr &&
                  log.lastMentions("has_z") && log.lastMentions("got 2"),
              "a flag that is not 0/1: null, and the error gives the value");
        Fields negative({{"has_D", 1}, {"has_z", 0}, {"has_delta_bias", 1}, {"delta_softplus", 1},
                         {"workspace_multiprocessors", -3}});
        check(creator->createPlugin("scan", &negative.collection, TensorRTPhase::kRUNTIME) == nullptr &&
                  log.lastMentions("workspace_multiprocessors"),
              "a negative serialized multiprocessor count: null");
    }

    // A VMamba v0 / Vim style node: D, z and delta_bias all present (8 inputs).
    Fields all = nodeFields(1, 1, 1, 1);
    IPluginV3* built = creator->createPlugin("scan", &all.collection, TensorRTPhase::kBUILD);
    check(built != nullptr, "valid fields: a plugin");
    if (!built) return 1;
    auto* core = static_cast<IPluginV3OneCore*>(built->getCapabilityInterface(PluginCapabilityType::kCORE));
    auto* build = static_cast<IPluginV3OneBuild*>(built->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* runtime = static_cast<IPluginV3OneRuntime*>(built->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    check(core && build && runtime, "core, build and runtime capabilities");
    if (!core || !build || !runtime) return 1;
    check(std::strcmp(core->getPluginName(), "SelectiveScan") == 0 && std::strcmp(core->getPluginNamespace(), "avssm") == 0,
          "the plugin's name and namespace");
    check(build->getNbOutputs() == 1, "one output");

    // Serialized fields: the four attributes plus the build GPU's multiprocessor count, and back.
    PluginFieldCollection const* serialized = runtime->getFieldsToSerialize();
    check(serialized && serialized->nbFields == 5 && fieldValue(serialized, "has_z") == 1 &&
              fieldValue(serialized, "delta_softplus") == 1 && fieldValue(serialized, "workspace_multiprocessors") >= 0,
          "getFieldsToSerialize: the attributes and workspace_multiprocessors");
    Fields fromEngine({{"has_D", 1}, {"has_z", 1}, {"has_delta_bias", 1}, {"delta_softplus", 1}, {"workspace_multiprocessors", 8}});
    IPluginV3* deserialized = creator->createPlugin("scan", &fromEngine.collection, TensorRTPhase::kRUNTIME);
    check(deserialized != nullptr, "a plugin from serialized fields");
    if (!deserialized) return 1;
    auto* runtime2 = static_cast<IPluginV3OneRuntime*>(deserialized->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    PluginFieldCollection const* again = runtime2->getFieldsToSerialize();
    check(fieldValue(again, "workspace_multiprocessors") == 8 && fieldValue(again, "has_D") == 1 &&
              fieldValue(again, "has_delta_bias") == 1,
          "serialized fields round-trip");
    IPluginV3* cloned = deserialized->clone();
    check(cloned && fieldValue(static_cast<IPluginV3OneRuntime*>(cloned->getCapabilityInterface(PluginCapabilityType::kRUNTIME))
                                   ->getFieldsToSerialize(), "workspace_multiprocessors") == 8,
          "clone keeps the fields");
    delete cloned;

    // Shapes of a Vim-tiny block at 1080p: batch 1, dim 384, L 8160, N 16, 2 groups (both directions).
    int64_t const b = 1, d = 384, L = 8160, N = 16, g = 2;
    std::vector<PluginTensorDesc> in = {desc({b, d, L}, DataType::kHALF),    desc({b, d, L}, DataType::kHALF),
                                        desc({d, N}, DataType::kFLOAT),      desc({b, g, N, L}, DataType::kHALF),
                                        desc({b, g, N, L}, DataType::kHALF), desc({d}, DataType::kFLOAT),
                                        desc({b, d, L}, DataType::kHALF),    desc({d}, DataType::kFLOAT)};
    PluginTensorDesc out = desc({b, d, L}, DataType::kHALF);

    // Workspace: sized for the multiprocessors the engine was built for, not this machine's.
    auto* build2 = static_cast<IPluginV3OneBuild*>(deserialized->getCapabilityInterface(PluginCapabilityType::kBUILD));
    std::vector<DynamicPluginTensorDesc> dyn;
    for (auto const& t : in) dyn.push_back(dynamic(t));
    DynamicPluginTensorDesc dynOut = dynamic(out);
    check(build2->getWorkspaceSize(dyn.data(), 8, &dynOut, 1) == workspaceSize(b, d, L, N, 8),
          "getWorkspaceSize uses the serialized multiprocessor count");

    // Formats: linear only; u/delta/B/C/z/y one dtype among fp32/fp16/bf16; A, D, delta_bias fp32.
    std::vector<DynamicPluginTensorDesc> io = dyn;
    io.push_back(dynOut);
    check(build->supportsFormatCombination(0, io.data(), 8, 1), "u fp16 linear");
    for (int pos = 1; pos < 9; ++pos) check(build->supportsFormatCombination(pos, io.data(), 8, 1), "the Vim combination, position " + std::to_string(pos));
    io[0].desc.type = DataType::kINT8;
    check(!build->supportsFormatCombination(0, io.data(), 8, 1), "u int8 rejected");
    io[0].desc.type = DataType::kBF16;
    check(build->supportsFormatCombination(0, io.data(), 8, 1), "u bf16 accepted");
    check(!build->supportsFormatCombination(1, io.data(), 8, 1), "delta fp16 under bf16 u rejected");
    io[0].desc.type = DataType::kHALF;
    io[0].desc.format = TensorFormat::kCHW32;
    check(!build->supportsFormatCombination(0, io.data(), 8, 1), "a vectorized format rejected");
    io[0].desc.format = TensorFormat::kLINEAR;
    io[2].desc.type = DataType::kHALF;
    check(!build->supportsFormatCombination(2, io.data(), 8, 1), "A fp16 rejected (A is fp32)");
    io[2].desc.type = DataType::kFLOAT;
    io[8].desc.type = DataType::kFLOAT;
    check(!build->supportsFormatCombination(8, io.data(), 8, 1), "y of another dtype than u rejected");
    check(!build->supportsFormatCombination(9, io.data(), 8, 1) && !build->supportsFormatCombination(0, io.data(), 7, 1),
          "out-of-range position and wrong input count rejected");

    DataType outType{};
    DataType const inTypes[8] = {DataType::kBF16, DataType::kBF16, DataType::kFLOAT, DataType::kBF16,
                                 DataType::kBF16, DataType::kFLOAT, DataType::kBF16, DataType::kFLOAT};
    check(build->getOutputDataTypes(&outType, 1, inTypes, 8) == 0 && outType == DataType::kBF16, "y has u's dtype");

    // Build-time shapes (configurePlugin), dynamic extents as -1: consistent ones pass, a mismatch of known
    // extents fails the build with a message naming the tensor.
    check(build->configurePlugin(dyn.data(), 8, &dynOut, 1) == 0, "configurePlugin: static consistent shapes");
    std::vector<DynamicPluginTensorDesc> dynamicShapes = dyn;
    for (int pos : {0, 1, 6}) dynamicShapes[pos].desc.dims = dims({-1, d, -1});
    for (int pos : {3, 4}) dynamicShapes[pos].desc.dims = dims({-1, g, N, -1});
    dynamicShapes[1].desc.dims = dims({1, d, -1});  // one tensor more static than the others is not a mismatch
    check(build->configurePlugin(dynamicShapes.data(), 8, &dynOut, 1) == 0, "configurePlugin: dynamic batch and L");
    dynamicShapes[5].desc.dims = dims({d + 1});
    check(build->configurePlugin(dynamicShapes.data(), 8, &dynOut, 1) == -1 && log.lastMentions("D must be"),
          "configurePlugin: a D of the wrong length fails the build, naming D");
    dynamicShapes[5].desc.dims = dims({d});
    for (int pos : {3, 4}) dynamicShapes[pos].desc.dims = dims({-1, 5, N, -1});
    check(build->configurePlugin(dynamicShapes.data(), 8, &dynOut, 1) == -1 && log.lastMentions("B must be"),
          "configurePlugin: groups that do not divide dim fail the build, naming B");

    // Runtime shapes: consistent ones pass; each inconsistency fails with a message naming the tensor.
    check(runtime->onShapeChange(in.data(), 8, &out, 1) == 0, "consistent shapes accepted");
    struct Bad {
        int pos;
        std::vector<int64_t> shape;
        char const* name;
    };
    for (Bad const& bad : {Bad{1, {b, d, L + 1}, "delta"}, Bad{2, {d, 300}, "A"}, Bad{3, {b, 5, N, L}, "B"},
                           Bad{3, {b, g, N, L - 1}, "B"}, Bad{4, {b, g, N, L / 2}, "C"}, Bad{5, {d + 1}, "D"},
                           Bad{6, {b, d, 7}, "z"}, Bad{7, {1, d}, "delta_bias"}, Bad{0, {b, d}, "u"}}) {
        std::vector<PluginTensorDesc> wrong = in;
        wrong[bad.pos].dims = dims(bad.shape);
        std::string const expect = std::string(bad.name) + " must be";
        check(runtime->onShapeChange(wrong.data(), 8, &out, 1) == -1 && log.lastMentions(expect.c_str()),
              std::string("inconsistent ") + bad.name + " rejected with a message naming it");
    }

    // An empty batch (dynamic shapes allow it): nothing to launch, success, even with no GPU.
    std::vector<PluginTensorDesc> empty = in;
    for (int pos : {0, 1, 6}) empty[pos].dims = dims({0, d, L});
    for (int pos : {3, 4}) empty[pos].dims = dims({0, g, N, L});
    PluginTensorDesc emptyOut = desc({0, d, L}, DataType::kHALF);
    void const* pointers[8] = {};
    void* outputs[1] = {nullptr};
    check(runtime->onShapeChange(empty.data(), 8, &emptyOut, 1) == 0 &&
              runtime->enqueue(empty.data(), &emptyOut, pointers, outputs, nullptr, nullptr) == 0,
          "an empty batch is a successful no-op");

    // Node variants: fewer inputs, distinct timing-cache ids.
    Fields bare = nodeFields(0, 0, 0, 0);
    IPluginV3* v2 = creator->createPlugin("scan", &bare.collection, TensorRTPhase::kBUILD);
    check(v2 != nullptr, "a VMamba v2 node (no D, z, bias): a plugin");
    if (v2) {
        auto* build3 = static_cast<IPluginV3OneBuild*>(v2->getCapabilityInterface(PluginCapabilityType::kBUILD));
        check(std::strcmp(build3->getTimingCacheID(), build->getTimingCacheID()) != 0, "timing-cache ids differ by attributes");
        std::vector<DynamicPluginTensorDesc> five(io.begin(), io.begin() + 5);
        five.push_back(dynOut);
        five[5].desc.type = DataType::kHALF;
        check(build3->supportsFormatCombination(5, five.data(), 5, 1), "5 inputs: position 5 is the output");
        delete v2;
    }

    delete deserialized;
    delete built;
    checkFusedCreator(static_cast<IPluginCreatorV3One*>(creators[1]), creator, log, fusedWorkspaceSize);
    return checks::report();
}
