#include "detector.hpp"

#include "errors.hpp"
#include "postprocess.hpp"
#include "report.hpp"
#include "preprocess_launch.hpp"

#include "NvInferRuntime.h"

#include <dlfcn.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <mutex>

// From libavssm_trt_plugin.so, which avssm_infer links: registers the SelectiveScan creator unless it is there.
extern "C" bool avssmInitPlugins(nvinfer1::IPluginRegistry* registry);

namespace avssm {
namespace infer {
namespace {

#define AVSSM_STR2(x) #x
#define AVSSM_STR(x) AVSSM_STR2(x)
constexpr char const* kNvinfer = "libnvinfer.so." AVSSM_STR(NV_TENSORRT_MAJOR);

// TensorRT as this process has it (a program that links it), else loaded from libnvinfer.so.<major>.
struct TensorRT {
    void* (*createRuntime)(void*, int32_t) noexcept{nullptr};
    nvinfer1::IPluginRegistry* (*registry)() noexcept{nullptr};
    int32_t (*version)() noexcept{nullptr};
    std::string problem;
};

TensorRT const& tensorrt() {
    static TensorRT const found = [] {
        TensorRT t;
        void* scope = RTLD_DEFAULT;
        if (dlsym(scope, "createInferRuntime_INTERNAL") == nullptr) {
            scope = dlopen(kNvinfer, RTLD_NOW | RTLD_GLOBAL);
            if (scope == nullptr) {
                t.problem = std::string("TensorRT's ") + kNvinfer + " is not found (" + dlerror() + "): install TensorRT " +
                            AVSSM_STR(NV_TENSORRT_MAJOR) + " or add its lib folder to LD_LIBRARY_PATH";
                return t;
            }
        }
        t.createRuntime = reinterpret_cast<decltype(t.createRuntime)>(dlsym(scope, "createInferRuntime_INTERNAL"));
        t.registry = reinterpret_cast<decltype(t.registry)>(dlsym(scope, "getPluginRegistry"));
        t.version = reinterpret_cast<decltype(t.version)>(dlsym(scope, "getInferLibVersion"));
        if (!t.createRuntime || !t.registry || !t.version) t.problem = std::string(kNvinfer) + " lacks TensorRT's entry points";
        return t;
    }();
    return found;
}

// TensorRT's errors, kept for the one line a failure reports: the last one logged on the calling thread (TensorRT
// logs a call's errors on the thread that made it), so detectors used from several threads keep their own.
class Logger : public nvinfer1::ILogger {
public:
    void log(Severity severity, char const* msg) noexcept override {
        if (severity > Severity::kERROR) return;
        lastOnThisThread() = msg;
    }
    std::string last() {
        std::string const& message = lastOnThisThread();
        return message.empty() ? "see TensorRT's log" : message;
    }

private:
    static std::string& lastOnThisThread() {
        thread_local std::string message;
        return message;
    }
};

// The one logger of every detector in the process: TensorRT may keep the first logger it is given as its
// process-wide one, so it is never destroyed (a detector's own logger was freed with the detector).
Logger& processLogger() {
    static Logger* const logger = new Logger();
    return *logger;
}

void cuda(cudaError_t err, char const* what) {
    if (err != cudaSuccess) throw Error(AVSSM_ERROR_CUDA, std::string(what) + ": " + cudaGetErrorString(err));
}

std::string versionText(int32_t v) {
    return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

// "10.3.0.26" -> "10.3.0": the part TensorRT's version number holds.
std::string firstThree(std::string const& version) {
    size_t end = 0;
    for (int dots = 0; end < version.size(); ++end) {
        if (version[end] == '.' && ++dots == 3) break;
    }
    return version.substr(0, end);
}

constexpr double kMiB = 1024.0 * 1024.0;

size_t elementSize(nvinfer1::DataType t) { return t == nvinfer1::DataType::kHALF ? 2 : 4; }

int64_t volume(nvinfer1::Dims const& d) {
    int64_t v = 1;
    for (int32_t i = 0; i < d.nbDims; ++i) v *= d.d[i];
    return v;
}

struct DeviceBuffer {
    void* data{nullptr};
    size_t bytes{0};
    void allocate(size_t size) {
        cuda(cudaMalloc(&data, size), "cudaMalloc");
        bytes = size;
    }
    ~DeviceBuffer() {
        if (data) cudaFree(data);
    }
};

}  // namespace

struct Detector::State {
    std::string engine;
    Metadata meta;
    Logger& logger{processLogger()};
    std::unique_ptr<nvinfer1::IRuntime> runtime;
    std::unique_ptr<nvinfer1::ICudaEngine> cudaEngine;
    std::unique_ptr<nvinfer1::IExecutionContext> context;
    std::string input{"images"}, boxes{"boxes"}, scores{"scores"};
    nvinfer1::DataType boxesType{}, scoresType{};
    int64_t minH{0}, minW{0}, maxH{0}, maxW{0};
    DeviceBuffer inputBuffer, boxesBuffer, scoresBuffer, staging, table;
    std::vector<uint8_t> boxesHost, scoresHost;
    cudaStream_t ownStream{nullptr};
    cudaEvent_t events[4]{};
    avssm_timing timing{};

    ~State() {
        for (cudaEvent_t e : events) {
            if (e) cudaEventDestroy(e);
        }
        if (ownStream) cudaStreamDestroy(ownStream);
        context.reset();
        cudaEngine.reset();
        runtime.reset();
    }
};

Detector::Detector(std::string const& enginePath) : mState(new State) {
    State& s = *mState;
    s.engine = enginePath;
    std::ifstream file(enginePath, std::ios::binary);
    if (!file) throw Error(AVSSM_ERROR_FILE, "engine " + enginePath + ": no such file, or it cannot be read");
    std::vector<char> const plan((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    s.meta = readSidecar(enginePath + ".json", enginePath);

    TensorRT const& trt = tensorrt();
    if (!trt.problem.empty()) throw Error(AVSSM_ERROR_TENSORRT, trt.problem);
    int device = 0;
    cudaDeviceProp props{};
    cuda(cudaGetDevice(&device), "cudaGetDevice (is there a CUDA GPU?)");
    cuda(cudaGetDeviceProperties(&props, device), "cudaGetDeviceProperties");
    std::string const here = versionText(trt.version());
    if (firstThree(s.meta.tensorrt) != here || s.meta.gpu != props.name) {
        throw Error(AVSSM_ERROR_MISMATCH, "engine " + enginePath + ": built with TensorRT " + s.meta.tensorrt + " on " +
                                              s.meta.gpu + ", this is TensorRT " + here + " on " + props.name +
                                              "; rebuild it here with avssm build");
    }
    if (s.meta.needsPlugin() && !avssmInitPlugins(trt.registry())) {
        throw Error(AVSSM_ERROR_PLUGIN, "engine " + enginePath + ": has SelectiveScan nodes and avssm's plugin could not "
                                        "be registered (see the line before); rebuild avssm_infer with avssm "
                                        "build-plugins for this TensorRT");
    }
    s.runtime.reset(static_cast<nvinfer1::IRuntime*>(trt.createRuntime(&s.logger, NV_TENSORRT_VERSION)));
    if (!s.runtime) throw Error(AVSSM_ERROR_TENSORRT, "TensorRT could not create a runtime: " + s.logger.last());
    s.cudaEngine.reset(s.runtime->deserializeCudaEngine(plan.data(), plan.size()));
    if (!s.cudaEngine) {
        throw Error(AVSSM_ERROR_TENSORRT, "engine " + enginePath + ": TensorRT could not load it (" + s.logger.last() +
                                              "); rebuild it with avssm build");
    }
    bool haveBoxes = false, haveScores = false, haveInput = false;
    for (int32_t i = 0; i < s.cudaEngine->getNbIOTensors(); ++i) {
        std::string const name = s.cudaEngine->getIOTensorName(i);
        if (s.cudaEngine->getTensorIOMode(name.c_str()) == nvinfer1::TensorIOMode::kINPUT) {
            s.input = name;
            haveInput = true;
        }
        haveBoxes = haveBoxes || name == s.boxes;
        haveScores = haveScores || name == s.scores;
    }
    if (!haveInput || !haveBoxes || !haveScores) {
        throw Error(AVSSM_ERROR_FILE, "engine " + enginePath + ": needs an input and the outputs boxes and scores "
                                      "(a detector exported with avssm export)");
    }
    nvinfer1::DataType const inputType = s.cudaEngine->getTensorDataType(s.input.c_str());
    if (inputType != (s.meta.halfInput ? nvinfer1::DataType::kHALF : nvinfer1::DataType::kFLOAT)) {
        throw Error(AVSSM_ERROR_FILE, "engine " + enginePath + ": its input's dtype is not the metadata's; rebuild it");
    }
    s.boxesType = s.cudaEngine->getTensorDataType(s.boxes.c_str());
    s.scoresType = s.cudaEngine->getTensorDataType(s.scores.c_str());

    // The input's size range: the profile of a dynamic engine, the fixed shape of a static one.
    nvinfer1::Dims lo = s.cudaEngine->getProfileShape(s.input.c_str(), 0, nvinfer1::OptProfileSelector::kMIN);
    nvinfer1::Dims hi = s.cudaEngine->getProfileShape(s.input.c_str(), 0, nvinfer1::OptProfileSelector::kMAX);
    if (lo.nbDims != 4 || hi.nbDims != 4) lo = hi = s.cudaEngine->getTensorShape(s.input.c_str());
    if (lo.nbDims != 4 || hi.d[1] != 3) throw Error(AVSSM_ERROR_FILE, "engine " + enginePath + ": input is not (N, 3, H, W)");
    s.minH = lo.d[2], s.minW = lo.d[3], s.maxH = hi.d[2], s.maxW = hi.d[3];

    s.context.reset(s.cudaEngine->createExecutionContext());
    if (!s.context) throw Error(AVSSM_ERROR_TENSORRT, "engine " + enginePath + ": no execution context (" + s.logger.last() + ")");
    // Buffers for the largest input, allocated once.
    if (!s.context->setInputShape(s.input.c_str(), nvinfer1::Dims4{1, 3, s.maxH, s.maxW})) {
        throw Error(AVSSM_ERROR_TENSORRT, "engine " + enginePath + ": refuses its own largest input shape");
    }
    size_t const inputElement = s.meta.halfInput ? 2 : 4;
    s.inputBuffer.allocate(static_cast<size_t>(3 * s.maxH * s.maxW) * inputElement);
    s.boxesBuffer.allocate(static_cast<size_t>(volume(s.context->getTensorShape(s.boxes.c_str()))) * elementSize(s.boxesType));
    s.scoresBuffer.allocate(static_cast<size_t>(volume(s.context->getTensorShape(s.scores.c_str()))) * elementSize(s.scoresType));
    s.staging.allocate(static_cast<size_t>(s.maxH * s.maxW * 3));
    s.boxesHost.resize(s.boxesBuffer.bytes);
    s.scoresHost.resize(s.scoresBuffer.bytes);
    std::vector<float> const table = normalizationTable(s.meta.normalization);
    if (s.meta.halfInput) {
        std::vector<uint16_t> const half = toHalf(table);
        s.table.allocate(half.size() * 2);
        cuda(cudaMemcpy(s.table.data, half.data(), half.size() * 2, cudaMemcpyHostToDevice), "cudaMemcpy");
    } else {
        s.table.allocate(table.size() * 4);
        cuda(cudaMemcpy(s.table.data, table.data(), table.size() * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
    }
    cuda(cudaStreamCreateWithFlags(&s.ownStream, cudaStreamNonBlocking), "cudaStreamCreate");
    for (cudaEvent_t& e : s.events) cuda(cudaEventCreate(&e), "cudaEventCreate");
}

Detector::Detector(Detector&&) noexcept = default;
Detector::~Detector() = default;

std::vector<avssm_detection> Detector::detect(avssm_frame const& frame, avssm_postprocess_params const& params,
                                              cudaStream_t stream) {
    State& s = *mState;
    auto const start = std::chrono::steady_clock::now();
    if (frame.data == nullptr) throw Error(AVSSM_ERROR_ARGUMENT, "frame: data is NULL");
    if (frame.format < AVSSM_PIXEL_BGR8 || frame.format > AVSSM_PIXEL_NV12) {
        throw Error(AVSSM_ERROR_ARGUMENT, "frame: format " + std::to_string(frame.format) + " is not an avssm_pixel_format");
    }
    if (frame.memory != AVSSM_MEMORY_HOST && frame.memory != AVSSM_MEMORY_DEVICE) {
        throw Error(AVSSM_ERROR_ARGUMENT, "frame: memory must be AVSSM_MEMORY_HOST or AVSSM_MEMORY_DEVICE");
    }
    PixelLayout const layout = pixelLayout(frame.format, s.meta.normalization.rgb);
    int64_t const rowBytes = static_cast<int64_t>(frame.width) * layout.bytesPerPixel;
    if (frame.width < 1 || frame.height < 1 || frame.stride < rowBytes) {
        throw Error(AVSSM_ERROR_ARGUMENT, "frame: " + std::to_string(frame.width) + "x" + std::to_string(frame.height) +
                                              " (WxH) with stride " + std::to_string(frame.stride) +
                                              ": width and height must be >= 1 and stride >= width x bytes per pixel");
    }
    if (layout.nv12 && (frame.width % 2 || frame.height % 2)) {
        throw Error(AVSSM_ERROR_ARGUMENT, "frame: an NV12 frame has even width and height, got " +
                                              std::to_string(frame.width) + "x" + std::to_string(frame.height));
    }
    if (frame.height < s.minH || frame.height > s.maxH || frame.width < s.minW || frame.width > s.maxW) {
        throw Error(AVSSM_ERROR_SHAPE, "frame " + std::to_string(frame.height) + "x" + std::to_string(frame.width) +
                                           " (HxW) is outside engine " + s.engine + "'s input profile " +
                                           std::to_string(s.minH) + "x" + std::to_string(s.minW) + " to " +
                                           std::to_string(s.maxH) + "x" + std::to_string(s.maxW) +
                                           "; rebuild it with avssm build --min-shape/--max-shape covering it");
    }
    cudaStream_t const st = stream ? stream : s.ownStream;
    cuda(cudaEventRecord(s.events[0], st), "cudaEventRecord");
    PreprocessArgs args{};
    args.frame = static_cast<uint8_t const*>(frame.data);
    args.stride = frame.stride;
    if (frame.memory == AVSSM_MEMORY_HOST) {
        int64_t const rows = layout.nv12 ? frame.height * 3 / 2 : frame.height;  // NV12: the UV rows follow
        cuda(cudaMemcpy2DAsync(s.staging.data, static_cast<size_t>(rowBytes), frame.data, static_cast<size_t>(frame.stride),
                               static_cast<size_t>(rowBytes), static_cast<size_t>(rows), cudaMemcpyHostToDevice, st),
             "cudaMemcpy2DAsync (frame upload)");
        args.frame = static_cast<uint8_t const*>(s.staging.data);
        args.stride = rowBytes;
    }
    args.width = args.outWidth = frame.width;
    args.height = args.outHeight = frame.height;  // the model pads to its multiple itself
    args.bytesPerPixel = layout.bytesPerPixel;
    for (int c = 0; c < 3; ++c) args.source[c] = layout.source[c];
    args.nv12 = layout.nv12;
    args.table = s.table.data;
    args.input = s.inputBuffer.data;
    cuda(launchPreprocess(args, s.meta.halfInput, st), "preprocess kernel");
    cuda(cudaEventRecord(s.events[1], st), "cudaEventRecord");

    if (!s.context->setInputShape(s.input.c_str(), nvinfer1::Dims4{1, 3, frame.height, frame.width}) ||
        !s.context->setTensorAddress(s.input.c_str(), s.inputBuffer.data) ||
        !s.context->setTensorAddress(s.boxes.c_str(), s.boxesBuffer.data) ||
        !s.context->setTensorAddress(s.scores.c_str(), s.scoresBuffer.data)) {
        throw Error(AVSSM_ERROR_TENSORRT, "engine " + s.engine + ": input or output not set (" + s.logger.last() + ")");
    }
    if (!s.context->enqueueV3(st)) throw Error(AVSSM_ERROR_TENSORRT, "engine " + s.engine + ": inference failed (" + s.logger.last() + ")");
    nvinfer1::Dims const boxesShape = s.context->getTensorShape(s.boxes.c_str());
    nvinfer1::Dims const scoresShape = s.context->getTensorShape(s.scores.c_str());
    size_t const boxesBytes = static_cast<size_t>(volume(boxesShape)) * elementSize(s.boxesType);
    size_t const scoresBytes = static_cast<size_t>(volume(scoresShape)) * elementSize(s.scoresType);
    cuda(cudaMemcpyAsync(s.boxesHost.data(), s.boxesBuffer.data, boxesBytes, cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
    cuda(cudaMemcpyAsync(s.scoresHost.data(), s.scoresBuffer.data, scoresBytes, cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync");
    cuda(cudaEventRecord(s.events[2], st), "cudaEventRecord");
    cuda(cudaStreamSynchronize(st), "inference");

    auto const post = std::chrono::steady_clock::now();
    int64_t const candidates = boxesShape.d[1], classes = scoresShape.d[2];
    auto asFloat = [](std::vector<uint8_t> const& raw, nvinfer1::DataType type, int64_t count) {
        std::vector<float> out(static_cast<size_t>(count));
        for (int64_t i = 0; i < count; ++i) {
            if (type == nvinfer1::DataType::kHALF) {
                out[i] = halfToFloat(reinterpret_cast<uint16_t const*>(raw.data())[i]);
            } else {
                out[i] = reinterpret_cast<float const*>(raw.data())[i];
            }
        }
        return out;
    };
    std::vector<float> const boxes = asFloat(s.boxesHost, s.boxesType, candidates * 4);
    std::vector<float> const scores = asFloat(s.scoresHost, s.scoresType, candidates * classes);
    std::vector<avssm_detection> found = postprocess(boxes.data(), scores.data(), candidates, classes, params);
    auto const end = std::chrono::steady_clock::now();

    float pre = 0.f, inference = 0.f;
    cudaEventElapsedTime(&pre, s.events[0], s.events[1]);
    cudaEventElapsedTime(&inference, s.events[1], s.events[2]);
    s.timing.preprocess_ms = pre;
    s.timing.inference_ms = inference;
    s.timing.postprocess_ms = std::chrono::duration<double, std::milli>(end - post).count();
    s.timing.end_to_end_ms = std::chrono::duration<double, std::milli>(end - start).count();
    return found;
}

avssm_timing Detector::timing() const { return mState->timing; }

Metadata const& Detector::metadata() const { return mState->meta; }

avssm_memory_report Detector::memory() const {
    State const& s = *mState;
#if NV_TENSORRT_VERSION >= 100100
    double const engine = static_cast<double>(s.cudaEngine->getDeviceMemorySizeV2());
#else
    double const engine = static_cast<double>(s.cudaEngine->getDeviceMemorySize());
#endif
    size_t freeBytes = 0, totalBytes = 0;
    cuda(cudaMemGetInfo(&freeBytes, &totalBytes), "cudaMemGetInfo");
    size_t const buffers = s.inputBuffer.bytes + s.boxesBuffer.bytes + s.scoresBuffer.bytes + s.staging.bytes + s.table.bytes;
    avssm_memory_report m{engine / kMiB, static_cast<double>(buffers) / kMiB,
                   static_cast<double>(totalBytes - freeBytes) / kMiB, -1.0, -1.0};
    unifiedMemory(m.unified_total_mib, m.unified_available_mib);
    return m;
}

avssm_model_info Detector::info() const {
    State const& s = *mState;
    return {s.meta.model.c_str(), s.meta.precision.c_str(), s.meta.scanOp.c_str(),
            static_cast<int32_t>(s.meta.classNames.size()), static_cast<int32_t>(s.minH), static_cast<int32_t>(s.minW),
            static_cast<int32_t>(s.maxH), static_cast<int32_t>(s.maxW)};
}

}  // namespace infer
}  // namespace avssm
