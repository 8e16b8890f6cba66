// TensorRT plugin "SelectiveScan" (versions 1 and 2, namespace "avssm"): IPluginV3 backing the ONNX node
// trt.plugins::SelectiveScan written by `avssm export --scan-op plugin`; version 2 nodes carry a fused layout
// (cross-2d, bidirectional). Contract: README.md here.
// Builds against the TensorRT 10.x (>= 10.0) and 11.x headers; the kernel is libavssm_kernels.
#pragma once

#include "NvInferRuntime.h"

#include <string>
#include <vector>

namespace avssm {
namespace trt {

constexpr char const* kPluginName = "SelectiveScan";
constexpr char const* kPluginVersion = "1";       // the sequence layout
constexpr char const* kFusedPluginVersion = "2";  // the fused layouts
constexpr char const* kPluginNamespace = "avssm";

// The node's attributes, required by createPlugin, and what the engine serializes besides them.
struct ScanAttributes {
    int32_t hasD{0};
    int32_t hasZ{0};
    int32_t hasDeltaBias{0};
    int32_t deltaSoftplus{0};
    // 0 the sequence layout (version 1); AVSSM_FUSED_CROSS_2D or AVSSM_FUSED_BIDIRECTIONAL (version 2).
    int32_t layout{0};
    // Multiprocessors the workspace is sized for: the build GPU's. Not a node attribute: serialized, so
    // that an engine run on a larger GPU still tells the kernel the workspace TensorRT allocated.
    int32_t workspaceMultiprocessors{0};
};

// What each plugin input is, in node order: u, delta, A, B, C, then D, z, delta_bias as present.
enum class Role { kU, kDelta, kA, kB, kC, kD, kZ, kDeltaBias };
constexpr int32_t kMaxInputs = 8;

class SelectiveScanPlugin : public nvinfer1::IPluginV3,
                            public nvinfer1::IPluginV3OneCore,
                            public nvinfer1::IPluginV3OneBuild,
                            public nvinfer1::IPluginV3OneRuntime {
public:
    explicit SelectiveScanPlugin(ScanAttributes attrs);

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override { return kPluginName; }
    char const* getPluginVersion() const noexcept override { return mAttrs.layout ? kFusedPluginVersion : kPluginVersion; }
    char const* getPluginNamespace() const noexcept override { return kPluginNamespace; }

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                            nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs, nvinfer1::DataType const* inputTypes,
                               int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
                            int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                            nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                   int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override { return 1; }
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                            nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
    char const* getTimingCacheID() noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
                          int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
                    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    int32_t index(Role role) const noexcept;  // input index of a role, -1 if absent
    // Empty if the inputs' shapes (input order; -1 for a dynamic extent at build time) agree, else what is wrong.
    std::string shapeProblem(nvinfer1::Dims const* dims) const;
    std::string fusedShapeProblem(nvinfer1::Dims const* dims) const;  // the same for a fused layout
    int32_t checkShapes(nvinfer1::Dims const* dims) const noexcept;  // 0, or -1 with shapeProblem logged
    template <typename Params>
    void setTensors(Params& p, void const* const* inputs, void* y, void* workspace) const noexcept;
    int32_t enqueueFused(nvinfer1::PluginTensorDesc const* inputDesc, void const* const* inputs, void* const* outputs,
                         void* workspace, cudaStream_t stream) const noexcept;
    int32_t nbInputs() const noexcept { return static_cast<int32_t>(mRoles.size()); }

    ScanAttributes mAttrs;
    std::vector<Role> mRoles;
    std::string mTimingCacheId;
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

// One creator per version: "1" reads the sequence layout's nodes, "2" the fused layouts' (field `layout`).
class SelectiveScanPluginCreator : public nvinfer1::IPluginCreatorV3One {
public:
    explicit SelectiveScanPluginCreator(bool fused);
    char const* getPluginName() const noexcept override { return kPluginName; }
    char const* getPluginVersion() const noexcept override { return mFused ? kFusedPluginVersion : kPluginVersion; }
    char const* getPluginNamespace() const noexcept override { return kPluginNamespace; }
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override { return &mFieldCollection; }
    nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
                                      nvinfer1::TensorRTPhase phase) noexcept override;

private:
    bool mFused;
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

}  // namespace trt
}  // namespace avssm

// Exported for dynamic loading (IPluginRegistry::loadLibrary, trtexec --dynamicPlugins) and for C++
// programs that link the library and register explicitly.
extern "C" {
nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);
nvinfer1::IPluginCreatorInterface* const* getPluginCreators(int32_t& nbCreators);  // TensorRT 10.0-10.1
void setLoggerFinder(nvinfer1::ILoggerFinder* finder);
// Registers the creators (versions 1 and 2) with `registry` (pass getPluginRegistry()), each unless it holds one
// already (another component registered it). True when both are registered afterwards; false (the reason logged) when `registry` is
// null, refuses it, or belongs to another TensorRT major than this library's headers.
bool avssmInitPlugins(nvinfer1::IPluginRegistry* registry);
// The same with the registry of the TensorRT loaded in this process, found when called (libavssm_trt_autoregister.so
// calls it as it loads); false, with one line logged, when no TensorRT is loaded.
bool avssmRegisterPlugins();
}
