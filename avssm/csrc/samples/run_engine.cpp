// Minimal C++ program (the pattern for a C++ / ROS 2 node) that runs an avssm TensorRT engine.
//
//   run_engine model.engine [height width]
//
// It links libavssm_trt_plugin and registers the SelectiveScan creator with avssmInitPlugins() before
// deserializing (instead of IPluginRegistry::loadLibrary), feeds one zero frame, and prints the output
// shapes and the GPU time of one inference. Input preprocessing (normalization, NCHW, RGB) is the
// engine's avssm metadata in model.engine.json; a real node converts its camera image accordingly.
#include "NvInferRuntime.h"

#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
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
        std::fprintf(stderr, "usage: %s model.engine [height width]\n", argv[0]);
        return 2;
    }
    int64_t height = 1080, width = 1920;
    if (argc > 3 && !(parseSize(argv[2], height) && parseSize(argv[3], width))) {
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
    if (!avssmInitPlugins(getPluginRegistry())) {
        std::fprintf(stderr, "avssm plugin: registration failed (already registered?)\n");
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
    for (int32_t i = 0; i < engine->getNbIOTensors(); ++i) {
        char const* name = engine->getIOTensorName(i);
        if (engine->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT) {
            nvinfer1::Dims dims = engine->getTensorShape(name);
            if (dims.d[0] < 0) dims.d[0] = 1;
            if (dims.d[2] < 0) dims.d[2] = height;
            if (dims.d[3] < 0) dims.d[3] = width;
            context->setInputShape(name, dims);
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
        context->setTensorAddress(name, ptr);
        std::printf("%s %s [%s]\n", engine->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT ? "input " : "output",
                    name, shape.c_str());
    }
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    context->enqueueV3(stream);  // warm-up
    cudaEventRecord(start, stream);
    bool const ok = context->enqueueV3(stream);
    cudaEventRecord(stop, stream);
    if (!ok || !check(cudaStreamSynchronize(stream), "inference")) return 1;
    float ms = 0.f;
    cudaEventElapsedTime(&ms, start, stop);
    std::printf("inference %.2f ms (GPU time, one frame)\n", ms);
    for (void* ptr : buffers) cudaFree(ptr);
    cudaStreamDestroy(stream);
    return 0;
}
