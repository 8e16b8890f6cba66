// Minimal C++ program (the pattern for a C++ / ROS 2 node) that runs an avssm TensorRT engine.
//
//   run_engine model.engine [height width]
//
// It links libavssm_trt_plugin and registers the SelectiveScan creator with avssmInitPlugins() before
// deserializing (instead of IPluginRegistry::loadLibrary), unless another component of the process (a second
// node in one ROS 2 container) registered it already. It feeds one zero frame of the profile's optimal shape
// (height and width replaced when given), and prints the shapes and the GPU time of each stage: upload,
// inference, download. Input preprocessing (normalization, NCHW, RGB) is the engine's avssm metadata in
// model.engine.json; a real node converts its camera image accordingly.
#include "NvInferRuntime.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

extern "C" bool avssmInitPlugins(nvinfer1::IPluginRegistry* registry);

namespace {

class Logger : public nvinfer1::ILogger {
    void log(Severity severity, char const* msg) noexcept override {
        if (severity <= Severity::kWARNING) std::fprintf(stderr, "[TensorRT] %s\n", msg);
    }
};

bool check(cudaError_t err, char const* what) {
    if (err != cudaSuccess) std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(err));
    return err == cudaSuccess;
}

size_t elementSize(nvinfer1::DataType t) {
    switch (t) {
        case nvinfer1::DataType::kHALF:
        case nvinfer1::DataType::kBF16: return 2;
        case nvinfer1::DataType::kINT64: return 8;
        case nvinfer1::DataType::kINT8:
        case nvinfer1::DataType::kUINT8:
        case nvinfer1::DataType::kBOOL: return 1;
        default: return 4;
    }
}

bool parseSize(char const* text, int64_t& value) {
    char* end = nullptr;
    long long const parsed = std::strtoll(text, &end, 10);
    if (end == text || *end != '\0' || parsed < 1) return false;
    value = parsed;
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s model.engine [height width]  (default: the profile's optimal shape)\n", argv[0]);
        return 2;
    }
    int64_t height = 0, width = 0;
    bool const sizeHint = argc > 3;
    if (sizeHint && !(parseSize(argv[2], height) && parseSize(argv[3], width))) {
        std::fprintf(stderr, "height and width must be positive integers, got '%s' '%s'\n", argv[2], argv[3]);
        return 2;
    }
    std::ifstream file(argv[1], std::ios::binary);
    if (!file) {
        std::fprintf(stderr, "engine %s: cannot be read\n", argv[1]);
        return 2;
    }
    std::vector<char> plan((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());

    Logger logger;
    nvinfer1::IPluginRegistry* registry = getPluginRegistry();
    // Registers unless another component of the process (or libavssm_trt_autoregister.so) did; logs why it fails.
    if (!avssmInitPlugins(registry)) {
        std::fprintf(stderr, "avssm plugin: SelectiveScan (version 1, namespace avssm) is not registered\n");
        return 1;
    }
    std::unique_ptr<nvinfer1::IRuntime> runtime(nvinfer1::createInferRuntime(logger));
    std::unique_ptr<nvinfer1::ICudaEngine> engine(runtime->deserializeCudaEngine(plan.data(), plan.size()));
    if (!engine) {
        std::fprintf(stderr, "engine %s: not loadable here (TensorRT version, GPU or plugin); rebuild it with avssm build\n", argv[1]);
        return 1;
    }
    std::unique_ptr<nvinfer1::IExecutionContext> context(engine->createExecutionContext());
    cudaStream_t stream;
    if (!check(cudaStreamCreate(&stream), "cudaStreamCreate")) return 1;

    std::vector<void*> buffers;
    std::vector<std::pair<void*, size_t>> inputs, outputs;  // device pointer, bytes
    for (int32_t i = 0; i < engine->getNbIOTensors(); ++i) {
        char const* name = engine->getIOTensorName(i);
        if (engine->getTensorIOMode(name) != nvinfer1::TensorIOMode::kINPUT) continue;
        nvinfer1::Dims dims = engine->getTensorShape(name);
        bool dynamic = false;
        for (int32_t k = 0; k < dims.nbDims; ++k) dynamic = dynamic || dims.d[k] < 0;
        if (dynamic) dims = engine->getProfileShape(name, 0, nvinfer1::OptProfileSelector::kOPT);
        if (sizeHint && dims.nbDims >= 2) {  // the last two dimensions are height and width (NCHW)
            dims.d[dims.nbDims - 2] = height;
            dims.d[dims.nbDims - 1] = width;
        }
        if (!context->setInputShape(name, dims)) {
            std::fprintf(stderr, "input %s: the engine's profile does not take this shape; build it for it\n", name);
            return 1;
        }
    }
    for (int32_t i = 0; i < engine->getNbIOTensors(); ++i) {
        char const* name = engine->getIOTensorName(i);
        nvinfer1::Dims const dims = context->getTensorShape(name);
        size_t bytes = elementSize(engine->getTensorDataType(name));
        std::string shape;
        for (int32_t k = 0; k < dims.nbDims; ++k) {
            bytes *= static_cast<size_t>(dims.d[k]);
            shape += (k ? "x" : "") + std::to_string(dims.d[k]);
        }
        void* ptr = nullptr;
        if (!check(cudaMalloc(&ptr, bytes), "cudaMalloc") || !check(cudaMemsetAsync(ptr, 0, bytes, stream), "cudaMemset")) return 1;
        buffers.push_back(ptr);
        (engine->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT ? inputs : outputs).emplace_back(ptr, bytes);
        context->setTensorAddress(name, ptr);
        std::printf("%s %s [%s]\n", engine->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT ? "input " : "output",
                    name, shape.c_str());
    }
    // One frame's stages, as the Python runtime reports them: upload (host to device), inference, download.
    std::vector<char> host;
    for (auto const& io : inputs) host.resize(std::max(host.size(), io.second));
    for (auto const& io : outputs) host.resize(std::max(host.size(), io.second));
    cudaEvent_t events[4];
    for (cudaEvent_t& e : events) cudaEventCreate(&e);
    if (!context->enqueueV3(stream)) {  // warm-up
        std::fprintf(stderr, "inference failed (see TensorRT's messages above)\n");
        return 1;
    }
    cudaEventRecord(events[0], stream);
    for (auto const& io : inputs) cudaMemcpyAsync(io.first, host.data(), io.second, cudaMemcpyHostToDevice, stream);
    cudaEventRecord(events[1], stream);
    bool const ok = context->enqueueV3(stream);
    cudaEventRecord(events[2], stream);
    for (auto const& io : outputs) cudaMemcpyAsync(host.data(), io.first, io.second, cudaMemcpyDeviceToHost, stream);
    cudaEventRecord(events[3], stream);
    if (!ok || !check(cudaStreamSynchronize(stream), "inference")) return 1;
    char const* stages[] = {"upload", "inference", "download"};
    for (int k = 0; k < 3; ++k) {
        float ms = 0.f;
        cudaEventElapsedTime(&ms, events[k], events[k + 1]);
        std::printf("%-10s %8.2f ms (GPU time, one frame)\n", stages[k], ms);
    }
    for (void* ptr : buffers) cudaFree(ptr);
    cudaStreamDestroy(stream);
    return 0;
}
