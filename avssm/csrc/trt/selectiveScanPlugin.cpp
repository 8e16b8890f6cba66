// TensorRT plugin "SelectiveScan": see selectiveScanPlugin.h and README.md in this folder.
#include "selectiveScanPlugin.h"

#include "avssm/selective_scan.h"

#include <dlfcn.h>
#include <link.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <mutex>

using namespace nvinfer1;

namespace avssm {
namespace trt {
namespace {

std::mutex gLoggerMutex;
ILoggerFinder* gLoggerFinder{nullptr};

void logError(std::string const& message) noexcept {
    std::lock_guard<std::mutex> lock(gLoggerMutex);
    ILogger* logger = gLoggerFinder ? gLoggerFinder->findLogger() : nullptr;
    std::string const text = std::string("avssm SelectiveScan plugin: ") + message;
    if (logger) {
        logger->log(ILogger::Severity::kERROR, text.c_str());
    } else {
        std::fprintf(stderr, "%s\n", text.c_str());  // a program that linked the library set no logger finder
    }
}

// The node's attributes (the creator's field names: the four flags, and layout in version 2), then the
// serialized-only field.
char const* const kFieldNames[] = {"has_D", "has_z", "has_delta_bias", "delta_softplus", "layout",
                                   "workspace_multiprocessors"};
constexpr int kFlags = 4;
constexpr int kLayoutField = 4;
constexpr int kMultiprocessorsField = 5;
constexpr int kAllFields = 6;

std::string dimsText(Dims const& dims) {
    std::string text = "(";
    for (int32_t i = 0; i < dims.nbDims; ++i) {
        text += (i ? ", " : "") + std::to_string(dims.d[i]);
    }
    return text + ")";
}

// Extents agree unless both are known and differ: at build time -1 stands for a dynamic dimension.
bool agree(int64_t a, int64_t b) noexcept { return a < 0 || b < 0 || a == b; }

bool sameDims(Dims const& a, Dims const& b) noexcept {
    if (a.nbDims != b.nbDims) return false;
    for (int32_t i = 0; i < a.nbDims; ++i) {
        if (!agree(a.d[i], b.d[i])) return false;
    }
    return true;
}

bool isInputType(DataType t) noexcept {
    return t == DataType::kFLOAT || t == DataType::kHALF || t == DataType::kBF16;
}

avssm_dtype toScanType(DataType t) noexcept {
    return t == DataType::kHALF ? AVSSM_FLOAT16 : t == DataType::kBF16 ? AVSSM_BFLOAT16 : AVSSM_FLOAT32;
}

// The kernel library owns the CUDA runtime calls, so this library needs TensorRT's headers only.
int multiprocessorCount() noexcept { return avssm_current_multiprocessors(); }

}  // namespace

SelectiveScanPlugin::SelectiveScanPlugin(ScanAttributes attrs) : mAttrs(attrs) {
    mRoles = {Role::kU, Role::kDelta, Role::kA, Role::kB, Role::kC};
    if (mAttrs.hasD) mRoles.push_back(Role::kD);
    if (mAttrs.hasZ) mRoles.push_back(Role::kZ);
    if (mAttrs.hasDeltaBias) mRoles.push_back(Role::kDeltaBias);
    mTimingCacheId = std::string("avssm_SelectiveScan_v") + getPluginVersion() + "_D" + std::to_string(mAttrs.hasD) +
                     "_z" + std::to_string(mAttrs.hasZ) + "_bias" + std::to_string(mAttrs.hasDeltaBias) +
                     "_softplus" + std::to_string(mAttrs.deltaSoftplus);
    if (mAttrs.layout) mTimingCacheId += "_layout" + std::to_string(mAttrs.layout);
    int32_t const* values[] = {&mAttrs.hasD, &mAttrs.hasZ, &mAttrs.hasDeltaBias, &mAttrs.deltaSoftplus,
                               &mAttrs.layout, &mAttrs.workspaceMultiprocessors};
    for (int i = 0; i < kAllFields; ++i) {
        if (i == kLayoutField && !mAttrs.layout) continue;  // version 1 engines serialize what they always did
        mFields.emplace_back(kFieldNames[i], values[i], PluginFieldType::kINT32, 1);
    }
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
}

IPluginCapability* SelectiveScanPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept {
    switch (type) {
        case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
        case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
        case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

IPluginV3* SelectiveScanPlugin::clone() noexcept {
    try {
        return new SelectiveScanPlugin(mAttrs);
    } catch (std::exception const& e) {
        logError(std::string("clone failed: ") + e.what());
        return nullptr;
    }
}

int32_t SelectiveScanPlugin::index(Role role) const noexcept {
    for (size_t i = 0; i < mRoles.size(); ++i) {
        if (mRoles[i] == role) return static_cast<int32_t>(i);
    }
    return -1;
}

int32_t SelectiveScanPlugin::configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs,
                                             DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept {
    if (nbInputs != this->nbInputs() || nbOutputs != 1) {
        logError("expected " + std::to_string(this->nbInputs()) + " inputs (from has_D/has_z/has_delta_bias) and 1 output, got " +
                 std::to_string(nbInputs) + " and " + std::to_string(nbOutputs));
        return -1;
    }
    // The network's shapes, dynamic dimensions as -1: a mismatch fails the build with its message.
    Dims dims[kMaxInputs];
    for (int32_t i = 0; i < nbInputs; ++i) dims[i] = in[i].desc.dims;
    return checkShapes(dims);
}

int32_t SelectiveScanPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
                                                int32_t nbInputs) const noexcept {
    if (nbOutputs != 1 || nbInputs < 1) return -1;
    outputTypes[0] = inputTypes[0];  // y has u's type
    return 0;
}

int32_t SelectiveScanPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
                                             int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs,
                                             IExprBuilder& exprBuilder) noexcept {
    if (nbInputs != this->nbInputs() || nbOutputs != 1) return -1;
    outputs[0] = inputs[0];  // y like u: (batch, dim, L), or the map (batch, dim, H, W) in cross-2d
    if (mAttrs.layout == AVSSM_FUSED_BIDIRECTIONAL) {  // u (batch, 2 * dim, L) -> y (batch, dim, L)
        if (inputs[0].nbDims != 3) return -1;
        IDimensionExpr const* half =
            exprBuilder.operation(DimensionOperation::kFLOOR_DIV, *inputs[0].d[1], *exprBuilder.constant(2));
        if (half == nullptr) return -1;
        outputs[0].d[1] = half;
    }
    return 0;
}

bool SelectiveScanPlugin::supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                                    int32_t nbOutputs) noexcept {
    if (nbInputs != this->nbInputs() || nbOutputs != 1 || pos < 0 || pos >= nbInputs + nbOutputs) return false;
    PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != TensorFormat::kLINEAR) return false;
    if (pos == 0) return isInputType(desc.type);
    DataType const inputType = inOut[0].desc.type;
    if (pos == nbInputs) return desc.type == inputType;  // output
    switch (mRoles[pos]) {
        case Role::kA:
        case Role::kD:
        case Role::kDeltaBias: return desc.type == DataType::kFLOAT;
        default: return desc.type == inputType;  // delta, B, C, z
    }
}

size_t SelectiveScanPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                                             DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept {
    if (nbInputs != this->nbInputs()) return 0;
    Dims const& u = inputs[0].max;
    Dims const& A = inputs[2].max;
    if (A.nbDims != 2) return 0;
    if (mAttrs.layout == AVSSM_FUSED_CROSS_2D && u.nbDims == 4) {
        return avssm_fused_scan_workspace_size(mAttrs.layout, u.d[0], u.d[1], u.d[2] * u.d[3], A.d[1],
                                               toScanType(inputs[0].desc.type), mAttrs.workspaceMultiprocessors);
    }
    if (mAttrs.layout == AVSSM_FUSED_BIDIRECTIONAL && u.nbDims == 3) {
        return avssm_fused_scan_workspace_size(mAttrs.layout, u.d[0], u.d[1] / 2, u.d[2], A.d[1],
                                               toScanType(inputs[0].desc.type), mAttrs.workspaceMultiprocessors);
    }
    if (mAttrs.layout || u.nbDims != 3) return 0;
    return avssm_selective_scan_workspace_size(u.d[0], u.d[1], u.d[2], A.d[1], mAttrs.workspaceMultiprocessors);
}

char const* SelectiveScanPlugin::getTimingCacheID() noexcept { return mTimingCacheId.c_str(); }

std::string SelectiveScanPlugin::shapeProblem(Dims const* dims) const {
    if (mAttrs.layout) return fusedShapeProblem(dims);
    Dims const& u = dims[index(Role::kU)];
    Dims const& A = dims[index(Role::kA)];
    Dims const& B = dims[index(Role::kB)];
    if (u.nbDims != 3) return "u must be (batch, dim, L), got " + dimsText(u);
    int64_t const dim = u.d[1], N = A.nbDims == 2 ? A.d[1] : -1;
    if (A.nbDims != 2 || !agree(A.d[0], dim) || (N >= 0 && (N < 1 || N > AVSSM_SCAN_MAX_STATE))) {
        return "A must be (dim, N) with dim " + std::to_string(dim) + " (u's) and 1 <= N <= " +
               std::to_string(AVSSM_SCAN_MAX_STATE) + ", got " + dimsText(A);
    }
    int64_t const groups = B.nbDims == 4 ? B.d[1] : -1;
    bool const divides = groups < 0 || dim < 0 || (groups >= 1 && dim % groups == 0);
    if (B.nbDims != 4 || !agree(B.d[0], u.d[0]) || !divides || !agree(B.d[2], N) || !agree(B.d[3], u.d[2])) {
        return "B must be (batch, groups, N, L) = (" + std::to_string(u.d[0]) + ", a divisor of " +
               std::to_string(dim) + ", " + std::to_string(N) + ", " + std::to_string(u.d[2]) + "), got " +
               dimsText(B);
    }
    Dims vector;  // (dim,): D and delta_bias
    vector.nbDims = 1;
    vector.d[0] = dim;
    struct Expected {
        Role role;
        char const* name;
        Dims const& dims;
    };
    for (Expected const& e : {Expected{Role::kDelta, "delta", u}, Expected{Role::kC, "C", B}, Expected{Role::kD, "D", vector},
                              Expected{Role::kZ, "z", u}, Expected{Role::kDeltaBias, "delta_bias", vector}}) {
        int32_t const i = index(e.role);
        if (i >= 0 && !sameDims(dims[i], e.dims)) {
            return std::string(e.name) + " must be " + dimsText(e.dims) + ", got " + dimsText(dims[i]);
        }
    }
    return {};
}

namespace {

Dims makeDims(std::initializer_list<int64_t> extents) {
    Dims dims;
    dims.nbDims = static_cast<int32_t>(extents.size());
    int32_t i = 0;
    for (int64_t e : extents) dims.d[i++] = e;
    return dims;
}

int64_t product(int64_t a, int64_t b) noexcept { return a < 0 || b < 0 ? -1 : a * b; }

}  // namespace

// The fused layouts' shapes (README.md, "Fused layouts"): every input against u's and A's extents.
std::string SelectiveScanPlugin::fusedShapeProblem(Dims const* dims) const {
    Dims const& u = dims[index(Role::kU)];
    Dims const& A = dims[index(Role::kA)];
    bool const cross = mAttrs.layout == AVSSM_FUSED_CROSS_2D;
    int64_t const k = cross ? 4 : 2;
    if (cross ? u.nbDims != 4 : u.nbDims != 3 || (u.d[1] >= 0 && u.d[1] % 2 != 0)) {
        return cross ? "u must be (batch, dim, H, W) in layout cross-2d, got " + dimsText(u)
                     : "u must be (batch, 2 * dim, L) in layout bidirectional, got " + dimsText(u);
    }
    int64_t const batch = u.d[0];
    int64_t const dim = cross ? u.d[1] : (u.d[1] < 0 ? -1 : u.d[1] / 2);
    int64_t const N = A.nbDims == 2 ? A.d[1] : -1;
    if (A.nbDims != 2 || !agree(A.d[0], product(k, dim)) || (N >= 0 && (N < 1 || N > AVSSM_SCAN_MAX_STATE))) {
        return "A must be (" + std::to_string(k) + " * dim, N) with dim " + std::to_string(dim) +
               " and 1 <= N <= " + std::to_string(AVSSM_SCAN_MAX_STATE) + ", got " + dimsText(A);
    }
    Dims const delta = cross ? makeDims({batch, 4, dim, u.d[2], u.d[3]}) : u;
    Dims const state = cross ? makeDims({batch, 4, N, u.d[2], u.d[3]}) : makeDims({batch, 2, N, u.d[2]});
    Dims const gate = makeDims({batch, dim, cross ? -1 : u.d[2]});
    Dims const vector = makeDims({product(k, dim)});
    struct Expected {
        Role role;
        char const* name;
        Dims dims;
    };
    for (Expected const& e : {Expected{Role::kDelta, "delta", delta}, Expected{Role::kB, "B", state},
                              Expected{Role::kC, "C", state}, Expected{Role::kD, "D", vector},
                              Expected{Role::kZ, "z", gate}, Expected{Role::kDeltaBias, "delta_bias", vector}}) {
        int32_t const i = index(e.role);
        if (i >= 0 && !sameDims(dims[i], e.dims)) {
            return std::string(e.name) + " must be " + dimsText(e.dims) + ", got " + dimsText(dims[i]);
        }
    }
    return {};
}

int32_t SelectiveScanPlugin::checkShapes(Dims const* dims) const noexcept {
    try {
        std::string const problem = shapeProblem(dims);
        if (problem.empty()) return 0;
        logError("inconsistent input shapes: " + problem);
    } catch (std::exception const& e) {
        logError(std::string("shape check failed: ") + e.what());
    }
    return -1;
}

// Runtime shapes are checked here, once per shape, so that a malformed network fails with a message
// instead of the kernel reading past a tensor.
int32_t SelectiveScanPlugin::onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* /*out*/,
                                           int32_t nbOutputs) noexcept {
    if (nbInputs != this->nbInputs() || nbOutputs != 1) return -1;
    Dims dims[kMaxInputs];
    for (int32_t i = 0; i < nbInputs; ++i) dims[i] = in[i].dims;
    return checkShapes(dims);
}

// The tensors of a call, by role, into either kernel call's parameters (avssm_scan_params, avssm_fused_scan_params).
template <typename Params>
void SelectiveScanPlugin::setTensors(Params& p, void const* const* inputs, void* y, void* workspace) const noexcept {
    p.u = inputs[index(Role::kU)];
    p.delta = inputs[index(Role::kDelta)];
    p.A = static_cast<float const*>(inputs[index(Role::kA)]);
    p.B = inputs[index(Role::kB)];
    p.C = inputs[index(Role::kC)];
    p.D = mAttrs.hasD ? static_cast<float const*>(inputs[index(Role::kD)]) : nullptr;
    p.z = mAttrs.hasZ ? inputs[index(Role::kZ)] : nullptr;
    p.delta_bias = mAttrs.hasDeltaBias ? static_cast<float const*>(inputs[index(Role::kDeltaBias)]) : nullptr;
    p.delta_softplus = mAttrs.deltaSoftplus;
    p.y = y;
    p.workspace = workspace;
}

int32_t SelectiveScanPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
                                     void const* const* inputs, void* const* outputs, void* workspace,
                                     cudaStream_t stream) noexcept {
    Dims const& u = inputDesc[0].dims;
    Dims const& A = inputDesc[index(Role::kA)].dims;
    Dims const& B = inputDesc[index(Role::kB)].dims;
    for (int32_t i = 0; i < u.nbDims; ++i) {
        if (u.d[i] == 0) return 0;  // an empty y: nothing to compute
    }
    if (mAttrs.layout) return enqueueFused(inputDesc, inputs, outputs, workspace, stream);
    avssm_scan_params p{};
    p.batch = u.d[0];
    p.dim = u.d[1];
    p.length = u.d[2];
    p.dstate = A.d[1];
    p.groups = B.d[1];
    p.input_type = toScanType(inputDesc[0].type);
    setTensors(p, inputs, outputs[0], workspace);
    // TensorRT allocated getWorkspaceSize() for the profile's max shapes on the build GPU, which covers
    // these shapes; the kernel splits no further than that, whatever this GPU's size.
    p.workspace_bytes = workspace ? avssm_selective_scan_workspace_size(p.batch, p.dim, p.length, p.dstate,
                                                                        mAttrs.workspaceMultiprocessors)
                                  : 0;
    cudaError_t const err = avssm_selective_scan_fwd(&p, stream);
    if (err != cudaSuccess) {
        logError(std::string("kernel launch failed: ") + avssm_cuda_error_string(err));
        return -1;
    }
    return 0;
}

int32_t SelectiveScanPlugin::enqueueFused(PluginTensorDesc const* inputDesc, void const* const* inputs,
                                          void* const* outputs, void* workspace, cudaStream_t stream) const noexcept {
    Dims const& u = inputDesc[0].dims;
    bool const cross = mAttrs.layout == AVSSM_FUSED_CROSS_2D;
    avssm_fused_scan_params p{};
    p.layout = mAttrs.layout;
    p.batch = u.d[0];
    p.dim = cross ? u.d[1] : u.d[1] / 2;
    p.dstate = inputDesc[index(Role::kA)].dims.d[1];
    p.height = cross ? u.d[2] : 1;
    p.width = cross ? u.d[3] : u.d[2];
    p.input_type = toScanType(inputDesc[0].type);
    setTensors(p, inputs, outputs[0], workspace);
    // TensorRT allocated getWorkspaceSize() for the profile's max shapes, which covers these.
    p.workspace_bytes = avssm_fused_scan_workspace_size(p.layout, p.batch, p.dim, p.height * p.width, p.dstate,
                                                        p.input_type, mAttrs.workspaceMultiprocessors);
    cudaError_t const err = avssm_fused_scan_fwd(&p, stream);
    if (err != cudaSuccess) {
        logError(std::string("fused scan (layout ") + std::to_string(mAttrs.layout) + ") failed: " +
                 avssm_cuda_error_string(err));
        return -1;
    }
    return 0;
}

IPluginV3* SelectiveScanPlugin::attachToContext(IPluginResourceContext* /*context*/) noexcept { return clone(); }

PluginFieldCollection const* SelectiveScanPlugin::getFieldsToSerialize() noexcept { return &mFieldCollection; }

// ------------------------------------------------------------------------------------------ creator

SelectiveScanPluginCreator::SelectiveScanPluginCreator(bool fused) : mFused(fused) {
    // Only the node's attributes: the ONNX parser warns about every listed field a node lacks.
    for (int k = 0; k < (fused ? kLayoutField + 1 : kFlags); ++k) {
        mFields.emplace_back(kFieldNames[k], nullptr, PluginFieldType::kINT32, 1);
    }
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
}

IPluginV3* SelectiveScanPluginCreator::createPlugin(char const* /*name*/, PluginFieldCollection const* fc,
                                                    TensorRTPhase /*phase*/) noexcept {
    try {
        if (fc == nullptr) {
            logError("createPlugin: no fields given");
            return nullptr;
        }
        ScanAttributes attrs;
        int32_t* targets[] = {&attrs.hasD, &attrs.hasZ, &attrs.hasDeltaBias, &attrs.deltaSoftplus, &attrs.layout,
                              &attrs.workspaceMultiprocessors};
        bool seen[kAllFields] = {};
        for (int32_t i = 0; i < fc->nbFields; ++i) {
            PluginField const& f = fc->fields[i];
            if (f.name == nullptr) continue;
            for (int k = 0; k < kAllFields; ++k) {
                if (std::strcmp(f.name, kFieldNames[k]) != 0) continue;
                if (f.type != PluginFieldType::kINT32 || f.length != 1 || f.data == nullptr) {
                    logError(std::string("createPlugin: field '") + kFieldNames[k] + "' must be one INT32");
                    return nullptr;
                }
                int32_t const value = *static_cast<int32_t const*>(f.data);
                bool const flag = k < kFlags;
                bool valid = flag ? (value == 0 || value == 1) : value >= 0;
                std::string expected = flag ? "0 or 1" : ">= 0";
                if (k == kLayoutField) {  // version 2: 1 or 2; version 1 knows only 0, the sequence layout
                    valid = mFused ? (value == AVSSM_FUSED_CROSS_2D || value == AVSSM_FUSED_BIDIRECTIONAL) : value == 0;
                    expected = mFused ? "1 (cross-2d) or 2 (bidirectional) in a version 2 node"
                                      : "0 in a version 1 node (fused layouts are version 2)";
                }
                if (!valid) {
                    logError(std::string("createPlugin: field '") + kFieldNames[k] + "' must be " + expected +
                             ", got " + std::to_string(value));
                    return nullptr;
                }
                *targets[k] = value;
                seen[k] = true;
            }
        }
        for (int k = 0; k < (mFused ? kLayoutField + 1 : kFlags); ++k) {
            if (!seen[k]) {
                logError(std::string("createPlugin: missing field '") + kFieldNames[k] + "' (version " +
                         getPluginVersion() + ")");
                return nullptr;
            }
        }
        if (attrs.layout == AVSSM_FUSED_CROSS_2D && attrs.hasZ) {
            logError("createPlugin: layout 1 (cross-2d) takes no z: has_z must be 0");
            return nullptr;
        }
        // From the ONNX node (building): this GPU; from an engine (running): the GPU it was built on.
        if (!seen[kMultiprocessorsField]) attrs.workspaceMultiprocessors = multiprocessorCount();
        return new SelectiveScanPlugin(attrs);
    } catch (std::exception const& e) {
        logError(std::string("createPlugin failed: ") + e.what());
        return nullptr;
    }
}

}  // namespace trt
}  // namespace avssm

// ------------------------------------------------------------------------------------------ exports

namespace {
avssm::trt::SelectiveScanPluginCreator gCreator(false);      // version 1
avssm::trt::SelectiveScanPluginCreator gFusedCreator(true);  // version 2
avssm::trt::SelectiveScanPluginCreator* gCreators[] = {&gCreator, &gFusedCreator};
IPluginCreatorInterface* gCreatorInterfaces[] = {&gCreator, &gFusedCreator};
}  // namespace

extern "C" IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
    nbCreators = 2;
    return gCreatorInterfaces;
}

// The IPluginCreator (V1) entry point that loaders of TensorRT 10.0-10.1 call first: it lists V1 creators only,
// and this library has none (handing the V3 creator to a V1 interface would be read as the wrong class), so it
// lists nothing and those loaders go on to getCreators.
extern "C" IPluginCreatorInterface* const* getPluginCreators(int32_t& nbCreators) {
    nbCreators = 0;
    return nullptr;
}

extern "C" void setLoggerFinder(ILoggerFinder* finder) {
    std::lock_guard<std::mutex> lock(avssm::trt::gLoggerMutex);
    avssm::trt::gLoggerFinder = finder;
}

namespace {

using GetPluginRegistry = IPluginRegistry* (*)() noexcept;
using GetInferLibVersion = int32_t (*)() noexcept;

// The TensorRT library of this process: its registry and its version, both from the same library.
struct TensorRT {
    GetPluginRegistry registry{nullptr};
    GetInferLibVersion version{nullptr};
};

int visitLoaded(dl_phdr_info* info, size_t, void* data) {
    char const* path = info->dlpi_name;
    char const* base = path ? std::strrchr(path, '/') : nullptr;
    base = base ? base + 1 : path;
    // libnvinfer.so.10, libnvinfer.so.11, libnvinfer_lean.so.10, ...
    if (base == nullptr || std::strncmp(base, "libnvinfer", 10) != 0) return 0;
    void* handle = dlopen(path, RTLD_LAZY | RTLD_NOLOAD);  // only if loaded; it stays loaded by whoever loaded it
    if (handle == nullptr) return 0;
    TensorRT found{reinterpret_cast<GetPluginRegistry>(dlsym(handle, "getPluginRegistry")),
                   reinterpret_cast<GetInferLibVersion>(dlsym(handle, "getInferLibVersion"))};
    dlclose(handle);
    if (found.registry == nullptr) return 0;
    *static_cast<TensorRT*>(data) = found;
    return 1;
}

// TensorRT as this process has it: in the global scope (a program linked with libnvinfer, or one that loaded it
// RTLD_GLOBAL), else any loaded libnvinfer (ONNX Runtime's TensorRT provider loads it RTLD_LOCAL). Nothing is
// loaded: a library that registers itself must use the TensorRT of the process that loads it.
TensorRT findTensorRT() noexcept {
    TensorRT found{reinterpret_cast<GetPluginRegistry>(dlsym(RTLD_DEFAULT, "getPluginRegistry")),
                   reinterpret_cast<GetInferLibVersion>(dlsym(RTLD_DEFAULT, "getInferLibVersion"))};
    if (found.registry == nullptr) dl_iterate_phdr(visitLoaded, &found);
    return found;
}

// IPluginRegistry's virtual functions differ between TensorRT majors (11 dropped the V1 ones), so this library
// calls a registry only of the major its headers are: a TensorRT that does not say its version is not called.
bool registryFits(TensorRT const& process) noexcept {
    if (process.version == nullptr) {
        avssm::trt::logError("the TensorRT library of this process has no getInferLibVersion, so its plugin registry's "
                             "layout is unknown: SelectiveScan is not registered; load TensorRT " +
                             std::to_string(NV_TENSORRT_MAJOR) + "'s libnvinfer");
        return false;
    }
    int32_t const version = process.version();
    if (version / 10000 == NV_TENSORRT_MAJOR) return true;
    avssm::trt::logError("this library was built against TensorRT " + std::to_string(NV_TENSORRT_MAJOR) +
                         " headers and this process runs TensorRT " + std::to_string(version / 10000) + "." +
                         std::to_string(version / 100 % 100) + ": SelectiveScan is not registered; rebuild it with "
                         "avssm build-plugins --tensorrt-root <that TensorRT>");
    return false;
}

// Whether `registry` holds a SelectiveScan creator of `version` (namespace avssm), from this library or another
// copy. Read from getAllCreators: getCreator logs an error when the creator is absent.
bool hasSelectiveScan(IPluginRegistry& registry, char const* version) noexcept {
    int32_t count = 0;
    IPluginCreatorInterface* const* creators = registry.getAllCreators(&count);
    for (int32_t i = 0; creators != nullptr && i < count; ++i) {
        IPluginCreatorInterface* c = creators[i];
        if (c == nullptr || std::strcmp(c->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") != 0) continue;
        auto* v3 = static_cast<IPluginCreatorV3One*>(c);
        if (std::strcmp(v3->getPluginName(), avssm::trt::kPluginName) == 0 &&
            std::strcmp(v3->getPluginVersion(), version) == 0 &&
            std::strcmp(v3->getPluginNamespace(), avssm::trt::kPluginNamespace) == 0) {
            return true;
        }
    }
    return false;
}

// One registration at a time in this process: two detectors opened at once would both find the creator absent and
// both register it, and a registry refuses the second.
std::mutex gRegistrationMutex;

// Once a registry holds this library's creators, the library must stay mapped: DeepStream dlcloses its
// custom-lib-path when a pipeline stops, and the next start walks the registered creators. RTLD_NODELETE on the
// already loaded library (found by an address inside it) keeps it for the life of the process.
void keepLoaded() noexcept {
    Dl_info self{};
    if (dladdr(reinterpret_cast<void*>(&keepLoaded), &self) != 0 && self.dli_fname != nullptr) {
        void* handle = dlopen(self.dli_fname, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
        if (handle != nullptr) dlclose(handle);  // the flag stays; this reference goes
    }
}

bool registerOnce(IPluginRegistry* registry, TensorRT const& process) noexcept {
    if (registry == nullptr || !registryFits(process)) return false;
    std::lock_guard<std::mutex> lock(gRegistrationMutex);
    keepLoaded();
    bool all = true;
    for (avssm::trt::SelectiveScanPluginCreator* creator : gCreators) {
        char const* version = creator->getPluginVersion();
        if (hasSelectiveScan(*registry, version)) continue;  // another component or library registered it
        if (registry->registerCreator(*creator, avssm::trt::kPluginNamespace)) continue;
        // Refused: a component outside this lock (another copy of the library) may have registered it meanwhile.
        if (hasSelectiveScan(*registry, version)) continue;
        avssm::trt::logError(std::string("TensorRT's plugin registry refused the SelectiveScan creator (version ") +
                             version + ", namespace avssm)");
        all = false;
    }
    return all;
}

}  // namespace

extern "C" bool avssmInitPlugins(IPluginRegistry* registry) {
    return registerOnce(registry, findTensorRT());
}

#define AVSSM_TRT_STR2(x) #x
#define AVSSM_TRT_STR(x) AVSSM_TRT_STR2(x)

extern "C" bool avssmRegisterPlugins() {
    TensorRT process = findTensorRT();
    if (process.registry == nullptr) {
        // Loaded before TensorRT (Triton's LD_PRELOAD; Python's ctypes before `import tensorrt`): load the
        // TensorRT these headers are, from the library path. The program's own later load of that library gets
        // the same library, so its registry holds SelectiveScan. RTLD_LOCAL: nothing enters the global scope.
        char const* const library = "libnvinfer.so." AVSSM_TRT_STR(NV_TENSORRT_MAJOR);
        void* handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
        if (handle != nullptr) {
            process = {reinterpret_cast<GetPluginRegistry>(dlsym(handle, "getPluginRegistry")),
                       reinterpret_cast<GetInferLibVersion>(dlsym(handle, "getInferLibVersion"))};
        }
        if (process.registry == nullptr) {
            avssm::trt::logError(std::string("no TensorRT is loaded in this process and ") + library +
                                 " is not on the library path, so SelectiveScan is not registered: load "
                                 "libavssm_trt_autoregister.so after TensorRT, or pass libavssm_trt_plugin.so to "
                                 "IPluginRegistry::loadLibrary (trtexec --dynamicPlugins)");
            return false;
        }
    }
    return registerOnce(process.registry(), process);
}
