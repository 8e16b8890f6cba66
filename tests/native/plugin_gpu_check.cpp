// Drives libavssm_trt_plugin.so through every IPluginV3 call TensorRT makes when it builds an engine from an
// exported SelectiveScan node and when it runs that engine, in TensorRT's order, and compares what enqueue writes
// into real CUDA buffers with a double-precision reference of the node's contract (avssm/csrc/trt/README.md).
// TensorRT itself is not involved: its headers, and this program in TensorRT's place (the shape expressions come
// from an IExprBuilder implemented here, as TensorRT implements it). benchmarks/gpu_session.sh runs it on a GPU;
// tests/test_native.py runs it without one, where every call but enqueue is made.
//
//   plugin_gpu_check PLUGIN_LIB [--host-memory]
//
// prints one line per failed check, one per case run, and "N passed, M failed". --host-memory: the buffers are
// host memory, for a plugin built over tests/native/host_scan.cpp (the kernel API in plain loops) instead of
// the CUDA kernels: the plugin's enqueue then runs without a GPU, which checks what it hands the scan.
#include "NvInferRuntime.h"

#include "checks.h"

#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace {

using checks::check;

struct Logger : ILogger {
    void log(Severity severity, AsciiChar const* msg) noexcept override {
        if (severity <= Severity::kWARNING) std::printf("plugin log: %s\n", msg);
    }
};

struct Finder : ILoggerFinder {
    Logger logger;
    ILogger* findLogger() noexcept override { return &logger; }
};

// ------------------------------------------------------------------------------- shape expressions

// A dimension expression: a constant, or a symbol TensorRT resolves only at run time (a dynamic extent).
struct ExprImpl : apiv::VDimensionExpr {
    bool constant{false};
    int64_t value{-1};
    bool isConstant() const override { return constant; }
    int64_t getConstantValue() const override { return value; }
    bool isSizeTensor() const override { return false; }
};

struct Expr : IDimensionExpr {
    ExprImpl impl;
    Expr(bool constant, int64_t value) {
        impl.constant = constant;
        impl.value = value;
        mImpl = &impl;
    }
};

struct BuilderImpl : apiv::VExprBuilder {
    std::deque<std::unique_ptr<Expr>> exprs;
    IDimensionExpr const* make(bool constant, int64_t value) {
        exprs.push_back(std::make_unique<Expr>(constant, value));
        return exprs.back().get();
    }
    IDimensionExpr const* constant(int64_t value) override { return make(true, value); }
    IDimensionExpr const* operation(DimensionOperation op, IDimensionExpr const& a, IDimensionExpr const& b) override {
        if (!a.isConstant() || !b.isConstant()) return make(false, -1);
        int64_t const x = a.getConstantValue(), y = b.getConstantValue();
        switch (op) {
            case DimensionOperation::kSUM: return make(true, x + y);
            case DimensionOperation::kPROD: return make(true, x * y);
            case DimensionOperation::kMAX: return make(true, x > y ? x : y);
            case DimensionOperation::kMIN: return make(true, x < y ? x : y);
            case DimensionOperation::kSUB: return make(true, x - y);
            case DimensionOperation::kEQUAL: return make(true, x == y);
            case DimensionOperation::kLESS: return make(true, x < y);
            case DimensionOperation::kFLOOR_DIV: return make(true, y ? x / y : 0);
            case DimensionOperation::kCEIL_DIV: return make(true, y ? (x + y - 1) / y : 0);
        }
        return make(false, -1);
    }
    IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override {
        return make(false, -1);
    }
};

struct ExprBuilder : IExprBuilder {
    BuilderImpl impl;
    ExprBuilder() { mImpl = &impl; }
};

struct ResourceContext : IPluginResourceContext {
    IGpuAllocator* getGpuAllocator() const noexcept override { return nullptr; }
    IErrorRecorder* getErrorRecorder() const noexcept override { return nullptr; }
};

// ------------------------------------------------------------------------------- the case

// A node. Version 1 (layout 0): u (batch, dim, length), groups as given. Version 2: layout 1 (cross-2d: u
// (batch, dim, height, length), the map's width being `length`) or 2 (bidirectional: u (batch, 2 * dim, length));
// groups is then the directions (4 or 2) and dim the output's channels.
struct Case {
    char const* name;
    int64_t batch, dim, length, nstate, groups;
    bool hasD, hasZ, hasBias, softplus;
    DataType type;
    int32_t layout = 0;
    int64_t height = 1;
};

constexpr int32_t kCross = 1, kBidirectional = 2;

enum { U, DELTA, A, B, C, D, Z, BIAS };

Dims dims(std::vector<int64_t> const& values) {
    Dims d{};
    d.nbDims = static_cast<int32_t>(values.size());
    for (size_t i = 0; i < values.size(); ++i) d.d[i] = values[i];
    return d;
}

int64_t volume(Dims const& d) {
    int64_t v = 1;
    for (int32_t i = 0; i < d.nbDims; ++i) v *= d.d[i];
    return v;
}

// The node's inputs in order (only those present): role, shape for batch b and length L, dtype.
struct Input {
    int role;
    Dims shape;
    DataType type;
};

std::vector<Input> inputs(Case const& c, int64_t b, int64_t L) {
    if (c.layout == kCross) {
        int64_t const H = c.height, k = 4 * c.dim;
        std::vector<Input> in = {{U, dims({b, c.dim, H, L}), c.type},
                                 {DELTA, dims({b, 4, c.dim, H, L}), c.type},
                                 {A, dims({k, c.nstate}), DataType::kFLOAT},
                                 {B, dims({b, 4, c.nstate, H, L}), c.type},
                                 {C, dims({b, 4, c.nstate, H, L}), c.type}};
        if (c.hasD) in.push_back({D, dims({k}), DataType::kFLOAT});
        if (c.hasBias) in.push_back({BIAS, dims({k}), DataType::kFLOAT});
        return in;
    }
    if (c.layout == kBidirectional) {
        int64_t const k = 2 * c.dim;
        std::vector<Input> in = {{U, dims({b, k, L}), c.type},
                                 {DELTA, dims({b, k, L}), c.type},
                                 {A, dims({k, c.nstate}), DataType::kFLOAT},
                                 {B, dims({b, 2, c.nstate, L}), c.type},
                                 {C, dims({b, 2, c.nstate, L}), c.type}};
        if (c.hasD) in.push_back({D, dims({k}), DataType::kFLOAT});
        if (c.hasZ) in.push_back({Z, dims({b, c.dim, L}), c.type});
        if (c.hasBias) in.push_back({BIAS, dims({k}), DataType::kFLOAT});
        return in;
    }
    std::vector<Input> in = {{U, dims({b, c.dim, L}), c.type},
                             {DELTA, dims({b, c.dim, L}), c.type},
                             {A, dims({c.dim, c.nstate}), DataType::kFLOAT},
                             {B, dims({b, c.groups, c.nstate, L}), c.type},
                             {C, dims({b, c.groups, c.nstate, L}), c.type}};
    if (c.hasD) in.push_back({D, dims({c.dim}), DataType::kFLOAT});
    if (c.hasZ) in.push_back({Z, dims({b, c.dim, L}), c.type});
    if (c.hasBias) in.push_back({BIAS, dims({c.dim}), DataType::kFLOAT});
    return in;
}

Dims outputShape(Case const& c, int64_t b, int64_t L) {
    return c.layout == kCross ? dims({b, c.dim, c.height, L}) : dims({b, c.dim, L});
}

uint16_t toHalf(float f) {  // round to nearest even; the inputs here are normal or zero
    uint32_t x;
    std::memcpy(&x, &f, 4);
    uint32_t const sign = (x >> 16) & 0x8000u;
    int32_t const exponent = static_cast<int32_t>((x >> 23) & 0xff) - 127 + 15;
    uint32_t mantissa = x & 0x7fffffu;
    if (exponent <= 0) return static_cast<uint16_t>(sign);
    if (exponent >= 31) return static_cast<uint16_t>(sign | 0x7c00u);
    uint32_t half = sign | (static_cast<uint32_t>(exponent) << 10) | (mantissa >> 13);
    uint32_t const rest = mantissa & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;
    return static_cast<uint16_t>(half);
}

float fromHalf(uint16_t h) {
    uint32_t const sign = (h & 0x8000u) << 16, exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
    uint32_t x = sign;
    if (exponent == 31) {
        x |= 0x7f800000u | (mantissa << 13);
    } else if (exponent != 0) {
        x |= ((exponent - 15 + 127) << 23) | (mantissa << 13);
    } else if (mantissa != 0) {
        float const value = std::ldexp(static_cast<float>(mantissa), -24);
        return sign ? -value : value;
    }
    float f;
    std::memcpy(&f, &x, 4);
    return f;
}

// The contract, in double precision, on the values as the plugin receives them.
std::vector<double> reference(Case const& c, int64_t b, int64_t L, std::vector<std::vector<float>> const& t) {
    std::vector<double> y(static_cast<size_t>(b * c.dim * L));
    std::vector<double> h(static_cast<size_t>(c.nstate));
    int64_t const perGroup = c.dim / c.groups;
    for (int64_t bi = 0; bi < b; ++bi) {
        for (int64_t d = 0; d < c.dim; ++d) {
            int64_t const g = d / perGroup;
            std::fill(h.begin(), h.end(), 0.0);
            for (int64_t l = 0; l < L; ++l) {
                size_t const i = static_cast<size_t>((bi * c.dim + d) * L + l);
                double dt = t[DELTA][i] + (c.hasBias ? t[BIAS][d] : 0.0);
                if (c.softplus) dt = dt <= 20.0 ? std::log1p(std::exp(dt)) : dt;
                double const u = t[U][i];
                double acc = 0.0;
                for (int64_t n = 0; n < c.nstate; ++n) {
                    size_t const bc = static_cast<size_t>(((bi * c.groups + g) * c.nstate + n) * L + l);
                    h[n] = std::exp(dt * t[A][d * c.nstate + n]) * h[n] + dt * t[B][bc] * u;
                    acc += h[n] * t[C][bc];
                }
                if (c.hasD) acc += t[D][d] * u;
                if (c.hasZ) acc *= t[Z][i] / (1.0 + std::exp(-static_cast<double>(t[Z][i])));
                y[i] = acc;
            }
        }
    }
    return y;
}

// The fused layouts' contract in double precision: each direction scanned in its order (README.md, "Fused
// layouts"), then cross-2d's (y0 + y2) + (y1 + y3) or bidirectional's (y0 + y1) / 2 at each position.
std::vector<double> fusedReference(Case const& c, int64_t b, int64_t W, std::vector<std::vector<float>> const& t) {
    bool const cross = c.layout == kCross;
    int64_t const H = cross ? c.height : 1, L = H * W, k = cross ? 4 : 2, N = c.nstate;
    std::vector<double> y(static_cast<size_t>(b * c.dim * L), 0.0), out(static_cast<size_t>(L));
    std::vector<double> h(static_cast<size_t>(N));
    auto position = [&](int64_t dir, int64_t step) {
        if (!cross) return dir ? L - 1 - step : step;
        int64_t const s = dir >= 2 ? L - 1 - step : step;
        return (dir & 1) ? (s % H) * W + s / H : s;
    };
    for (int64_t bi = 0; bi < b; ++bi) {
        for (int64_t d = 0; d < c.dim; ++d) {
            std::vector<double> sums[4];
            for (int64_t dir = 0; dir < k; ++dir) {
                int64_t const channel = dir * c.dim + d;
                // u: cross-2d's map is shared; delta (b, 4, dim, H, W) or (b, 2 * dim, L): the same flat row.
                int64_t const uRow = cross ? (bi * c.dim + d) * L : (bi * k * c.dim + channel) * L;
                int64_t const dtRow = (bi * k * c.dim + channel) * L;
                std::fill(h.begin(), h.end(), 0.0);
                sums[dir].assign(static_cast<size_t>(L), 0.0);
                for (int64_t step = 0; step < L; ++step) {
                    int64_t const p = position(dir, step);
                    double dt = t[DELTA][dtRow + p] + (c.hasBias ? t[BIAS][channel] : 0.0);
                    if (c.softplus) dt = dt <= 20.0 ? std::log1p(std::exp(dt)) : dt;
                    double const u = t[U][uRow + p];
                    double acc = 0.0;
                    for (int64_t n = 0; n < N; ++n) {
                        size_t const bc = static_cast<size_t>(((bi * k + dir) * N + n) * L + p);
                        h[n] = std::exp(dt * t[A][channel * N + n]) * h[n] + dt * t[B][bc] * u;
                        acc += h[n] * t[C][bc];
                    }
                    if (c.hasD) acc += t[D][channel] * u;
                    if (c.hasZ) {
                        double const z = t[Z][(bi * c.dim + d) * L + p];
                        acc *= z / (1.0 + std::exp(-z));
                    }
                    sums[dir][p] = acc;
                }
            }
            for (int64_t p = 0; p < L; ++p) {
                y[(bi * c.dim + d) * L + p] = cross ? (sums[0][p] + sums[2][p]) + (sums[1][p] + sums[3][p])
                                                    : (sums[0][p] + sums[1][p]) / 2.0;
            }
        }
    }
    return y;
}

// The fields TensorRT's ONNX parser passes for the node's int attributes: one kINT32 each.
struct Fields {
    std::vector<std::string> names;
    std::vector<int32_t> values;
    std::vector<PluginField> fields;
    PluginFieldCollection collection{};
    void add(char const* name, int32_t value) {
        names.emplace_back(name);
        values.push_back(value);
    }
    PluginFieldCollection const* done() {
        fields.clear();
        for (size_t i = 0; i < names.size(); ++i) {
            fields.emplace_back(names[i].c_str(), &values[i], PluginFieldType::kINT32, 1);
        }
        collection.nbFields = static_cast<int32_t>(fields.size());
        collection.fields = fields.data();
        return &collection;
    }
};

// What an engine stores of getFieldsToSerialize, read back: a copy (the plugin's memory is gone by then).
Fields serialize(PluginFieldCollection const* fc) {
    Fields copy;
    for (int32_t i = 0; fc && i < fc->nbFields; ++i) {
        PluginField const& f = fc->fields[i];
        if (f.type == PluginFieldType::kINT32 && f.length == 1 && f.data) {
            copy.add(f.name, *static_cast<int32_t const*>(f.data));
        } else {
            check(false, std::string("serialized field ") + (f.name ? f.name : "?") + " is one INT32");
        }
    }
    return copy;
}

template <typename T>
T* capability(IPluginV3* plugin, PluginCapabilityType type, char const* kind) {
    IPluginCapability* cap = plugin->getCapabilityInterface(type);
    check(cap != nullptr && std::strcmp(cap->getInterfaceInfo().kind, kind) == 0, std::string("capability ") + kind);
    return static_cast<T*>(cap);
}

bool gHostMemory = false;  // --host-memory
constexpr size_t kGuard = 1 << 20;  // bytes after the workspace, host memory only
constexpr char kGuardByte = 0x5b;

// The buffers enqueue gets: CUDA memory, or host memory with --host-memory.
struct DeviceBuffers {
    std::vector<void*> pointers;
    ~DeviceBuffers() {
        for (void* p : pointers) gHostMemory ? std::free(p) : static_cast<void>(cudaFree(p));
    }
    void* add(size_t bytes) {
        void* p = nullptr;
        if (gHostMemory) {
            p = std::malloc(bytes ? bytes : 1);
        } else if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
            return nullptr;
        }
        if (p) pointers.push_back(p);
        return p;
    }
};

bool transfer(void* to, void const* from, size_t bytes, cudaMemcpyKind kind) {
    if (gHostMemory) return std::memcpy(to, from, bytes) != nullptr;
    return cudaMemcpy(to, from, bytes, kind) == cudaSuccess;
}

size_t elementSize(DataType t) { return t == DataType::kFLOAT ? 4 : 2; }

// One node: built as TensorRT builds it (maximum shapes), serialized, re-created as an engine load does, attached
// to an execution context, then run at the maximum shapes and at a smaller length in the same profile.
void runCase(IPluginCreatorV3One* creator, Case const& c, bool gpu) {
    std::string const name = c.name;
    Fields node;
    node.add("has_D", c.hasD);
    node.add("has_z", c.hasZ);
    node.add("has_delta_bias", c.hasBias);
    node.add("delta_softplus", c.softplus);
    if (c.layout) node.add("layout", c.layout);
    IPluginV3* built = creator->createPlugin("scan", node.done(), TensorRTPhase::kBUILD);
    if (!check(built != nullptr, name + ": createPlugin from the node's fields (kBUILD)")) return;
    std::unique_ptr<IPluginV3> builtOwner(built);
    auto* core = capability<IPluginV3OneCore>(built, PluginCapabilityType::kCORE, "PLUGIN_V3ONE_CORE");
    auto* build = capability<IPluginV3OneBuild>(built, PluginCapabilityType::kBUILD, "PLUGIN_V3ONE_BUILD");
    if (!core || !build) return;
    check(std::strcmp(core->getPluginName(), "SelectiveScan") == 0 &&
              std::strcmp(core->getPluginVersion(), c.layout ? "2" : "1") == 0 &&
              std::strcmp(core->getPluginNamespace(), "avssm") == 0,
          name + ": name, version, namespace");

    std::vector<Input> const in = inputs(c, c.batch, c.length);
    int32_t const nbIn = static_cast<int32_t>(in.size());
    check(build->getNbOutputs() == 1, name + ": one output");

    // Types, then shapes as expressions: batch and L are dynamic (symbols), the rest constants.
    std::vector<DataType> inTypes;
    for (auto const& t : in) inTypes.push_back(t.type);
    DataType outType{};
    check(build->getOutputDataTypes(&outType, 1, inTypes.data(), nbIn) == 0 && outType == c.type, name + ": output type");
    ExprBuilder exprs;
    IDimensionExpr const* batchSym = exprs.impl.make(false, -1);
    IDimensionExpr const* lengthSym = exprs.impl.make(false, -1);
    std::vector<DimsExprs> inExprs(in.size());
    for (size_t i = 0; i < in.size(); ++i) {
        inExprs[i].nbDims = in[i].shape.nbDims;
        for (int32_t k = 0; k < in[i].shape.nbDims; ++k) {
            bool const isBatch = in[i].shape.nbDims >= 3 && k == 0;
            bool const isLength = in[i].shape.nbDims >= 3 && k == in[i].shape.nbDims - 1;
            inExprs[i].d[k] = isBatch ? batchSym : isLength ? lengthSym : exprs.constant(in[i].shape.d[k]);
        }
    }
    DimsExprs outExprs{};
    int32_t const outRank = c.layout == kCross ? 4 : 3;
    bool shapesOk = build->getOutputShapes(inExprs.data(), nbIn, nullptr, 0, &outExprs, 1, exprs) == 0 &&
                    outExprs.nbDims == outRank && outExprs.d[0] == batchSym && outExprs.d[outRank - 1] == lengthSym &&
                    outExprs.d[1]->isConstant() && outExprs.d[1]->getConstantValue() == c.dim;
    check(shapesOk, name + ": getOutputShapes gives y's shape (batch and L symbolic; dim channels)");

    // Format negotiation: TensorRT asks each position in turn with the earlier ones fixed.
    std::vector<DynamicPluginTensorDesc> io(in.size() + 1);
    Dims const yShape = outputShape(c, c.batch, c.length);
    for (size_t i = 0; i <= in.size(); ++i) {
        Dims const shape = i < in.size() ? in[i].shape : yShape;
        Dims buildShape = shape;
        if (shape.nbDims >= 3) buildShape.d[0] = buildShape.d[shape.nbDims - 1] = -1;
        io[i].desc.dims = buildShape;
        io[i].desc.type = i < in.size() ? in[i].type : c.type;
        io[i].desc.format = TensorFormat::kLINEAR;
        io[i].desc.scale = -1.f;
        io[i].min = shape;
        if (shape.nbDims >= 3) io[i].min.d[0] = io[i].min.d[shape.nbDims - 1] = 1;
        io[i].opt = io[i].max = shape;
    }
    check(build->getFormatCombinationLimit() >= 1, name + ": format combination limit");
    bool negotiation = true;
    for (int32_t pos = 0; pos <= nbIn; ++pos) {
        DataType const wanted = io[pos].desc.type;
        for (DataType t : {DataType::kFLOAT, DataType::kHALF, DataType::kBF16, DataType::kINT8}) {
            for (TensorFormat f : {TensorFormat::kLINEAR, TensorFormat::kCHW32}) {
                io[pos].desc.type = t;
                io[pos].desc.format = f;
                bool const accepted = build->supportsFormatCombination(pos, io.data(), nbIn, 1);
                // u chooses the input dtype (fp32, fp16 or bf16); every later position then has one answer.
                bool const expected = f == TensorFormat::kLINEAR &&
                                      (pos == 0 ? t != DataType::kINT8 : t == wanted);
                if (accepted != expected) negotiation = false;
            }
        }
        io[pos].desc.type = wanted;
        io[pos].desc.format = TensorFormat::kLINEAR;
    }
    check(negotiation, name + ": supportsFormatCombination accepts exactly the contract's linear types");

    check(build->configurePlugin(io.data(), nbIn, &io[nbIn], 1) == 0, name + ": configurePlugin (dynamic batch, L)");
    size_t const workspace = build->getWorkspaceSize(io.data(), nbIn, &io[nbIn], 1);
    int32_t const nbTactics = build->getNbTactics();
    check(nbTactics >= 0, name + ": getNbTactics");
    if (nbTactics > 0) {
        std::vector<int32_t> tactics(static_cast<size_t>(nbTactics));
        check(build->getValidTactics(tactics.data(), nbTactics) == 0, name + ": getValidTactics");
    }
    check(build->getTimingCacheID() != nullptr, name + ": timing cache id");
    build->getMetadataString();

    // Serialized into the engine; the builder's copies (clone) and the plugin itself are then released.
    auto* builtRuntime = capability<IPluginV3OneRuntime>(built, PluginCapabilityType::kRUNTIME, "PLUGIN_V3ONE_RUNTIME");
    if (!builtRuntime) return;
    Fields stored = serialize(builtRuntime->getFieldsToSerialize());
    std::unique_ptr<IPluginV3> copy(built->clone());
    check(copy != nullptr, name + ": clone");
    copy.reset();
    builtOwner.reset();

    // Engine load: re-created from the stored fields, then attached to an execution context.
    std::unique_ptr<IPluginV3> loaded(creator->createPlugin("scan", stored.done(), TensorRTPhase::kRUNTIME));
    if (!check(loaded != nullptr, name + ": createPlugin from the serialized fields (kRUNTIME)")) return;
    ResourceContext context;
    auto* loadedRuntime = capability<IPluginV3OneRuntime>(loaded.get(), PluginCapabilityType::kRUNTIME, "PLUGIN_V3ONE_RUNTIME");
    if (!loadedRuntime) return;
    std::unique_ptr<IPluginV3> attached(loadedRuntime->attachToContext(&context));
    if (!check(attached != nullptr, name + ": attachToContext")) return;
    auto* runtime = capability<IPluginV3OneRuntime>(attached.get(), PluginCapabilityType::kRUNTIME, "PLUGIN_V3ONE_RUNTIME");
    if (!runtime) return;
    check(runtime->setTactic(0) == 0, name + ": setTactic(default)");

    std::mt19937 rng(1234);
    std::normal_distribution<float> normal(0.f, 1.f);
    for (int64_t length : {c.length, c.length / 3 + 1}) {
        std::string const shape = name + " L=" + std::to_string(length);
        std::vector<Input> const now = inputs(c, c.batch, length);
        std::vector<PluginTensorDesc> desc(now.size() + 1);
        for (size_t i = 0; i <= now.size(); ++i) {
            desc[i].dims = i < now.size() ? now[i].shape : outputShape(c, c.batch, length);
            desc[i].type = i < now.size() ? now[i].type : c.type;
            desc[i].format = TensorFormat::kLINEAR;
            desc[i].scale = -1.f;
        }
        check(runtime->onShapeChange(desc.data(), nbIn, &desc[nbIn], 1) == 0, shape + ": onShapeChange");
        if (!gpu) continue;

        // Inputs in a trained model's range; half inputs as the plugin will see them.
        std::vector<std::vector<float>> host(8);
        DeviceBuffers device;
        std::vector<void const*> pointers;
        bool uploaded = true;
        for (auto const& t : now) {
            std::vector<float>& v = host[t.role];
            v.resize(static_cast<size_t>(volume(t.shape)));
            for (float& x : v) {
                float const r = normal(rng);
                x = t.role == A ? -std::exp(r) : t.role == DELTA ? 0.5f * r : t.role == BIAS ? 0.5f * r : r;
            }
            std::vector<uint16_t> half;
            void const* source = v.data();
            if (t.type == DataType::kHALF) {
                half.resize(v.size());
                for (size_t i = 0; i < v.size(); ++i) v[i] = fromHalf(half[i] = toHalf(v[i]));
                source = half.data();
            }
            size_t const bytes = v.size() * elementSize(t.type);
            void* p = device.add(bytes);
            uploaded = uploaded && p && transfer(p, source, bytes, cudaMemcpyHostToDevice);
            pointers.push_back(p);
        }
        size_t const outCount = static_cast<size_t>(volume(outputShape(c, c.batch, length)));
        void* out = device.add(outCount * elementSize(c.type));
        // Host memory: kGuard bytes after the workspace getWorkspaceSize announced, checked after enqueue.
        size_t const guarded = workspace + (gHostMemory ? kGuard : 0);
        void* work = workspace ? device.add(guarded) : nullptr;
        if (work && gHostMemory) std::memset(static_cast<char*>(work) + workspace, kGuardByte, kGuard);
        cudaStream_t stream{};
        if (!check(uploaded && out && (work || !workspace) && (gHostMemory || cudaStreamCreate(&stream) == cudaSuccess),
                   shape + ": buffers")) {
            continue;
        }
        void* outputs[1] = {out};
        auto const t0 = std::chrono::steady_clock::now();
        int32_t const status = runtime->enqueue(desc.data(), &desc[nbIn], pointers.data(), outputs, work, stream);
        cudaError_t const synced = gHostMemory ? cudaSuccess : cudaStreamSynchronize(stream);
        double const ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (!gHostMemory) cudaStreamDestroy(stream);
        if (!check(status == 0 && synced == cudaSuccess,
                   shape + ": enqueue (" + (gHostMemory ? "host" : cudaGetErrorString(synced)) + ")")) {
            continue;
        }
        if (work && gHostMemory) {
            char const* guard = static_cast<char const*>(work) + workspace;
            check(std::all_of(guard, guard + kGuard, [](char b) { return b == kGuardByte; }),
                  shape + ": enqueue stays within the " + std::to_string(workspace) +
                      " workspace bytes getWorkspaceSize announced");
        }

        std::vector<float> y(outCount);
        bool downloaded;
        if (c.type == DataType::kHALF) {
            std::vector<uint16_t> half(outCount);
            downloaded = transfer(half.data(), out, outCount * 2, cudaMemcpyDeviceToHost);
            for (size_t i = 0; i < outCount; ++i) y[i] = fromHalf(half[i]);
        } else {
            downloaded = transfer(y.data(), out, outCount * 4, cudaMemcpyDeviceToHost);
        }
        if (!check(downloaded, shape + ": download")) continue;
        std::vector<double> const ref =
            c.layout ? fusedReference(c, c.batch, length, host) : reference(c, c.batch, length, host);
        double maxErr = 0.0, maxRef = 1e-30;
        for (size_t i = 0; i < outCount; ++i) {
            maxErr = std::fmax(maxErr, std::fabs(y[i] - ref[i]));
            maxRef = std::fmax(maxRef, std::fabs(ref[i]));
        }
        double const tolerance = c.type == DataType::kHALF ? 5e-3 : 1e-4;
        double const rel = maxErr / maxRef;
        char line[160];
        std::snprintf(line, sizeof line, ": max |y - ref| / max |ref| = %.2e (tolerance %.0e), first enqueue %.2f ms",
                      rel, tolerance, ms);
        std::printf("%s%s\n", shape.c_str(), line);
        check(std::isfinite(rel) && rel < tolerance, shape + line);
    }
}

}  // namespace

int main(int argc, char** argv) {
    gHostMemory = argc == 3 && std::strcmp(argv[2], "--host-memory") == 0;
    if (argc != 2 && !gHostMemory) {
        std::fprintf(stderr, "usage: %s PLUGIN_LIB [--host-memory]\n", argv[0]);
        return 2;
    }
    void* library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!library) {
        std::fprintf(stderr, "cannot load %s: %s\n", argv[1], dlerror());
        return 2;
    }
    using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);
    using SetLoggerFinder = void (*)(ILoggerFinder*);
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(library, "getCreators"));
    auto setLoggerFinder = reinterpret_cast<SetLoggerFinder>(dlsym(library, "setLoggerFinder"));
    if (!getCreators || !setLoggerFinder) {
        std::fprintf(stderr, "%s: not an avssm TensorRT plugin library\n", argv[1]);
        return 2;
    }
    // IPluginRegistry::loadLibrary: the logger finder first, then the creators.
    Finder finder;
    setLoggerFinder(&finder);
    int32_t n = 0;
    IPluginCreatorInterface* const* creators = getCreators(n);
    if (!check(n == 2 && creators && std::strcmp(creators[0]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0 &&
                   std::strcmp(creators[1]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0,
               "getCreators gives the two V3 creators")) {
        return 1;
    }
    auto* creator = static_cast<IPluginCreatorV3One*>(creators[0]);
    auto* fusedCreator = static_cast<IPluginCreatorV3One*>(creators[1]);
    check(creator->getFieldNames() && creator->getFieldNames()->nbFields == 4 && fusedCreator->getFieldNames() &&
              fusedCreator->getFieldNames()->nbFields == 5,
          "the creators list the nodes' fields (version 2 adds layout)");

    int devices = 0;
    bool const gpu = gHostMemory || (cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0);
    if (gHostMemory) {
        std::printf("host memory: the plugin's enqueue runs the scan in plain loops, not the CUDA kernels\n");
    } else if (gpu) {
        cudaDeviceProp props{};
        cudaGetDeviceProperties(&props, 0);
        std::printf("GPU: %s (sm_%d%d)\n", props.name, props.major, props.minor);
    } else {
        std::printf("no CUDA device: every call but enqueue is made, no output is compared\n");
    }
    // VMamba (SS2D: the four directions as groups; has_D, has_delta_bias, no z; N = 1 for vmamba_tiny/small/base,
    // N = 16 for v0) and Vim (both directions as two groups, all inputs, N = 16; 8161 tokens = 1080p + class token).
    DataType const types[] = {DataType::kFLOAT, DataType::kHALF};
    for (DataType type : types) {
        char const* t = type == DataType::kFLOAT ? "fp32" : "fp16";
        std::vector<Case> const cases = {
            {"vmamba_tiny stage 1", 1, 4 * 192, 56 * 56, 1, 4, true, false, true, true, type},
            {"vmamba_v0 stage 1", 1, 4 * 192, 56 * 56, 16, 4, true, false, true, true, type},
            {"vim_tiny 1080p", 1, 2 * 384, 8161, 16, 2, true, true, true, true, type},
            {"vim batch 2", 2, 2 * 64, 1025, 16, 2, true, true, true, true, type},
            // Version 2: VMamba's four directions on a 28 x 36 map (N = 1 and 16), Vim's two on 1025 tokens.
            {"vmamba cross-2d", 1, 96, 36, 1, 4, true, false, true, true, type, kCross, 28},
            {"vmamba_v0 cross-2d", 2, 32, 36, 16, 4, true, false, true, true, type, kCross, 28},
            {"vim bidirectional", 2, 64, 1025, 16, 2, true, true, true, true, type, kBidirectional},
        };
        for (Case c : cases) {
            std::string const name = std::string(c.name) + " " + t;
            c.name = name.c_str();
            runCase(c.layout ? fusedCreator : creator, c, gpu);
        }
    }
    return checks::report(gpu ? "" : " (enqueue not run: no CUDA device)");
}
