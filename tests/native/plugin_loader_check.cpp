// How avssm's plugin libraries behave under each way a program loads TensorRT plugins, with a plugin registry that
// records the calls made to it instead of TensorRT's (tests/test_native.py builds and runs this). It checks what
// the libraries do, not what TensorRT does with them: TensorRT itself is not here.
//
// Built twice from this file:
//   -DRECORDING_NVINFER -shared -o libnvinfer.so.<major>   stands in for libnvinfer: exports getPluginRegistry and
//       getInferLibVersion (the headers' version, or $AVSSM_TEST_TENSORRT_VERSION) and nothing else
//   plugin_loader_check                                     the loading program:
//
//   plugin_loader_check MODE NVINFER PLUGIN AUTOREGISTER     prints one line per failed check and "N passed, M failed"
//
// MODE is how the program loads things (each mode is one process: a static initializer runs once per process):
//   global       NVINFER loaded RTLD_GLOBAL (trtexec, DeepStream, Triton link TensorRT), then AUTOREGISTER dlopened
//   local        NVINFER loaded RTLD_LOCAL (ONNX Runtime's TensorRT provider), then AUTOREGISTER dlopened
//   plugin-first PLUGIN registered as IPluginRegistry::loadLibrary does (getCreators), then AUTOREGISTER dlopened
//   init-after   AUTOREGISTER dlopened, then a second component calls avssmInitPlugins(getPluginRegistry())
//   absent       AUTOREGISTER dlopened with no TensorRT loaded (NVINFER unused)
//   other-major  as global, with a TensorRT of another major than the headers' ($AVSSM_TEST_TENSORRT_VERSION)
//   no-version   as global, with a TensorRT that has no getInferLibVersion (built with -DNO_VERSION)
//   concurrent   two threads call avssmInitPlugins at once, 20 rounds, each on an empty registry (two detectors
//                opened at the same time)
//   reload       AUTOREGISTER dlopened, dlclosed and dlopened again (DeepStream stops and starts a pipeline)
//   preload      AUTOREGISTER dlopened before any TensorRT (Triton's LD_PRELOAD, ctypes before `import tensorrt`),
//                with NVINFER's folder on LD_LIBRARY_PATH; then NVINFER loaded RTLD_LOCAL, as Triton's backend does
//
// The registry behaves as TensorRT's headers document: registerCreator refuses a (name, version, namespace) that is
// registered already, and calls are synchronized; lookups can be made slow to widen a race.
#include "NvInferRuntime.h"

#include "checks.h"

#include <dlfcn.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace nvinfer1;

namespace {

// The (name, version, namespace) of a V3 creator, as a registry keys it.
std::string key(IPluginCreatorInterface& creator, char const* ns) {
    if (std::strcmp(creator.getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") != 0) return "?";
    auto& v3 = static_cast<IPluginCreatorV3One&>(creator);
    return std::string(v3.getPluginName()) + "/" + v3.getPluginVersion() + "/" + (ns ? ns : "");
}

// Records every call; holds what is registered so that lookups answer as a registry does, and refuses a creator
// whose (name, version, namespace) is registered already, as TensorRT's does.
class RecordingRegistry : public IPluginRegistry {
public:
    std::vector<std::pair<IPluginCreatorInterface*, std::string>> registered;  // creator, namespace
    std::atomic<int> calls{0};  // every call to the registry
    int getCreatorCalls{0};     // TensorRT's getCreator logs an error when the creator is absent
    int refused{0};             // registerCreator calls refused as duplicates
    bool slow{false};           // lookups take 5 ms: two registrations racing both find the creator absent

    void reset() {
        std::lock_guard<std::mutex> lock(mMutex);
        registered.clear();
        calls = 0, getCreatorCalls = 0, refused = 0;
    }
    bool registerCreator(IPluginCreatorInterface& creator, AsciiChar const* const ns) noexcept override {
        ++calls;
        std::lock_guard<std::mutex> lock(mMutex);
        for (auto& r : registered) {
            if (key(*r.first, r.second.c_str()) == key(creator, ns)) return ++refused, false;
        }
        registered.emplace_back(&creator, ns ? ns : "");
        return true;
    }
    IPluginCreatorInterface* const* getAllCreators(int32_t* const n) const noexcept override {
        ++const_cast<RecordingRegistry*>(this)->calls;
        thread_local std::vector<IPluginCreatorInterface*> all;  // what this thread was handed
        {
            std::lock_guard<std::mutex> lock(mMutex);
            all.clear();
            for (auto const& r : registered) all.push_back(r.first);
        }
        if (slow) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        *n = static_cast<int32_t>(all.size());
        return all.data();
    }
    IPluginCreatorInterface* getCreator(AsciiChar const* const, AsciiChar const* const,
                                        AsciiChar const* const = "") noexcept override {
        ++calls;
        ++getCreatorCalls;
        return nullptr;
    }
    bool deregisterCreator(IPluginCreatorInterface const&) noexcept override { return ++calls, false; }
    void setErrorRecorder(IErrorRecorder* const) noexcept override { ++calls; }
    IErrorRecorder* getErrorRecorder() const noexcept override { return nullptr; }
    bool isParentSearchEnabled() const override { return true; }
    void setParentSearchEnabled(bool const) override { ++calls; }
    PluginLibraryHandle loadLibrary(AsciiChar const*) noexcept override { return ++calls, nullptr; }
    void deregisterLibrary(PluginLibraryHandle) noexcept override { ++calls; }
    IPluginResource* acquirePluginResource(AsciiChar const*, IPluginResource*) noexcept override {
        return ++calls, nullptr;
    }
    int32_t releasePluginResource(AsciiChar const*) noexcept override { return ++calls, -1; }
#if NV_TENSORRT_MAJOR < 11
    bool registerCreator(IPluginCreator&, AsciiChar const* const) noexcept override { return ++calls, false; }
    IPluginCreator* const* getPluginCreatorList(int32_t* const n) const noexcept override { return *n = 0, nullptr; }
    IPluginCreator* getPluginCreator(AsciiChar const* const, AsciiChar const* const,
                                     AsciiChar const* const = "") noexcept override {
        return ++calls, nullptr;
    }
    bool deregisterCreator(IPluginCreator const&) noexcept override { return ++calls, false; }
#else
    ~RecordingRegistry() noexcept override = default;
    IPluginCreatorInterface* const* getAllCreatorsRecursive(int32_t* const n) noexcept override {
        return getAllCreators(n);
    }
#endif

private:
    mutable std::mutex mMutex;
};

}  // namespace

#ifdef RECORDING_NVINFER

extern "C" IPluginRegistry* getPluginRegistry() noexcept {
    static RecordingRegistry registry;
    return &registry;
}

#ifndef NO_VERSION
extern "C" int32_t getInferLibVersion() noexcept {
    char const* forced = std::getenv("AVSSM_TEST_TENSORRT_VERSION");
    return forced ? std::atoi(forced) : NV_TENSORRT_VERSION;
}
#endif

#else

namespace {

using checks::check;

bool isSelectiveScan(IPluginCreatorInterface* c, char const* version) {
    if (c == nullptr || std::strcmp(c->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") != 0) return false;
    auto* v3 = static_cast<IPluginCreatorV3One*>(c);
    return std::strcmp(v3->getPluginName(), "SelectiveScan") == 0 &&
           std::strcmp(v3->getPluginVersion(), version) == 0 && std::strcmp(v3->getPluginNamespace(), "avssm") == 0;
}

// Exactly the two creators registered, once each: avssm's SelectiveScan V3 creators (versions 1 and 2) under
// namespace "avssm".
void checkRegisteredOnce(RecordingRegistry const& registry, std::string const& when) {
    check(registry.registered.size() == 2, when + ": two creators registered (got " +
                                               std::to_string(registry.registered.size()) + ")");
    if (registry.registered.size() != 2) return;
    check(isSelectiveScan(registry.registered[0].first, "1"), when + ": the first is SelectiveScan, version 1, V3");
    check(isSelectiveScan(registry.registered[1].first, "2"), when + ": the second is SelectiveScan, version 2, V3");
    check(registry.registered[0].second == "avssm" && registry.registered[1].second == "avssm",
          when + ": registered under namespace avssm");
    check(registry.getCreatorCalls == 0, when + ": looked up without getCreator (which logs an error when absent)");
}

void* open(char const* path, int flags) {
    void* handle = dlopen(path, flags);
    if (handle == nullptr) std::printf("FAILED: cannot load %s: %s\n", path, dlerror());
    return handle;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 5) {
        std::fprintf(stderr, "usage: %s MODE NVINFER PLUGIN AUTOREGISTER\n", argv[0]);
        return 2;
    }
    std::string const mode = argv[1];
    char const *nvinferPath = argv[2], *pluginPath = argv[3], *autoregisterPath = argv[4];
    using GetRegistry = IPluginRegistry* (*)();

    if (mode == "absent") {
        check(dlsym(RTLD_DEFAULT, "getPluginRegistry") == nullptr, "no TensorRT in this process");
        check(open(autoregisterPath, RTLD_NOW | RTLD_LOCAL) != nullptr, "the library loads without TensorRT");
        return checks::report();
    }
    if (mode == "preload") {
        check(dlsym(RTLD_DEFAULT, "getPluginRegistry") == nullptr, "no TensorRT in this process yet");
        check(open(autoregisterPath, RTLD_NOW | RTLD_LOCAL) != nullptr, "the library loads before TensorRT");
        void* later = open(nvinferPath, RTLD_NOW | RTLD_LOCAL);  // Triton's TensorRT backend, RTLD_LOCAL
        if (later == nullptr) return 2;
        auto* registry = static_cast<RecordingRegistry*>(reinterpret_cast<GetRegistry>(dlsym(later, "getPluginRegistry"))());
        checkRegisteredOnce(*registry, "preloaded, then TensorRT loaded by the host");
        return checks::report();
    }

    bool const local = mode == "local";
    void* nvinfer = open(nvinferPath, RTLD_NOW | (local ? RTLD_LOCAL : RTLD_GLOBAL));
    if (nvinfer == nullptr) return 2;
    auto* registry = static_cast<RecordingRegistry*>(reinterpret_cast<GetRegistry>(dlsym(nvinfer, "getPluginRegistry"))());
    check(local == (dlsym(RTLD_DEFAULT, "getPluginRegistry") == nullptr),
          local ? "TensorRT loaded RTLD_LOCAL is not in the global scope" : "TensorRT is in the global scope");

    if (mode == "global" || mode == "local") {
        check(open(autoregisterPath, RTLD_NOW | RTLD_LOCAL) != nullptr, "the self-registering library loads");
        checkRegisteredOnce(*registry, "dlopen alone");
        if (registry->registered.size() == 2) {
            auto* creator = static_cast<IPluginCreatorV3One*>(registry->registered[0].first);
            auto* fused = static_cast<IPluginCreatorV3One*>(registry->registered[1].first);
            PluginFieldCollection const* names = creator->getFieldNames();
            PluginFieldCollection const* fusedNames = fused->getFieldNames();
            check(names && names->nbFields == 4 && fusedNames && fusedNames->nbFields == 5,
                  "the registered creators work (four field names; five with layout in version 2)");
        }
    } else if (mode == "plugin-first") {
        // IPluginRegistry::loadLibrary: dlopen, then every creator from getCreators registered.
        void* plugin = open(pluginPath, RTLD_NOW | RTLD_LOCAL);
        if (plugin == nullptr) return 2;
        using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);
        int32_t n = 0;
        IPluginCreatorInterface* const* creators = reinterpret_cast<GetCreators>(dlsym(plugin, "getCreators"))(n);
        for (int32_t i = 0; i < n; ++i) {
            registry->registerCreator(*creators[i], static_cast<IPluginCreatorV3One*>(creators[i])->getPluginNamespace());
        }
        check(open(autoregisterPath, RTLD_NOW | RTLD_LOCAL) != nullptr, "the self-registering library loads after it");
        checkRegisteredOnce(*registry, "loadLibrary, then the self-registering library");
    } else if (mode == "init-after") {
        check(open(autoregisterPath, RTLD_NOW | RTLD_LOCAL) != nullptr, "the self-registering library loads");
        // A second component of the process (another ROS 2 node) registers as the C++ sample does.
        void* plugin = open(pluginPath, RTLD_NOW | RTLD_LOCAL);
        if (plugin == nullptr) return 2;
        using Init = bool (*)(IPluginRegistry*);
        auto init = reinterpret_cast<Init>(dlsym(plugin, "avssmInitPlugins"));
        check(init != nullptr && init(registry), "avssmInitPlugins reports the creator registered");
        check(init != nullptr && init(registry), "and again");
        checkRegisteredOnce(*registry, "the self-registering library, then avssmInitPlugins twice");
    } else if (mode == "other-major") {
        check(open(autoregisterPath, RTLD_NOW | RTLD_LOCAL) != nullptr, "the library loads");
        check(registry->calls == 0, "a registry of another TensorRT major is not called at all (got " +
                                        std::to_string(registry->calls) + " calls)");
        void* plugin = open(pluginPath, RTLD_NOW | RTLD_LOCAL);
        using Init = bool (*)(IPluginRegistry*);
        auto init = plugin ? reinterpret_cast<Init>(dlsym(plugin, "avssmInitPlugins")) : nullptr;
        check(init != nullptr && !init(registry) && registry->calls == 0, "avssmInitPlugins refuses it too");
    } else if (mode == "no-version") {
        check(dlsym(nvinfer, "getInferLibVersion") == nullptr, "this TensorRT does not say its version");
        check(open(autoregisterPath, RTLD_NOW | RTLD_LOCAL) != nullptr, "the library loads");
        void* plugin = open(pluginPath, RTLD_NOW | RTLD_LOCAL);
        using Init = bool (*)(IPluginRegistry*);
        auto init = plugin ? reinterpret_cast<Init>(dlsym(plugin, "avssmInitPlugins")) : nullptr;
        check(init != nullptr && !init(registry), "avssmInitPlugins refuses a registry of unknown layout");
        check(registry->calls == 0, "that registry is not called at all (got " + std::to_string(registry->calls) +
                                        " calls)");
    } else if (mode == "concurrent") {
        void* plugin = open(pluginPath, RTLD_NOW | RTLD_LOCAL);
        if (plugin == nullptr) return 2;
        using Init = bool (*)(IPluginRegistry*);
        auto init = reinterpret_cast<Init>(dlsym(plugin, "avssmInitPlugins"));
        int failedRounds = 0;
        for (int round = 0; round < 20; ++round) {
            registry->reset();
            registry->slow = true;
            std::atomic<bool> go{false};
            bool ok[2] = {false, false};
            std::thread threads[2];
            for (int t = 0; t < 2; ++t) {
                threads[t] = std::thread([&, t] {
                    while (!go) std::this_thread::yield();
                    ok[t] = init(registry);
                });
            }
            go = true;
            for (auto& thread : threads) thread.join();
            registry->slow = false;
            if (!ok[0] || !ok[1] || registry->registered.size() != 2) ++failedRounds;
        }
        check(failedRounds == 0, "two avssmInitPlugins at once both succeed and register each creator once, 20 of 20 "
                                 "rounds (failed " + std::to_string(failedRounds) + ")");
    } else if (mode == "reload") {
        void* first = open(autoregisterPath, RTLD_NOW | RTLD_LOCAL);
        checkRegisteredOnce(*registry, "loaded");
        if (first != nullptr) dlclose(first);  // the pipeline stops
        void* still = dlopen(pluginPath, RTLD_NOW | RTLD_NOLOAD);
        check(still != nullptr, "the library whose creators are registered stays mapped after dlclose");
        if (still != nullptr) {
            dlclose(still);
            for (auto const& r : registry->registered) {  // what TensorRT does at the next start: walk the creators
                auto* v3 = static_cast<IPluginCreatorV3One*>(r.first);
                check(std::strcmp(v3->getPluginName(), "SelectiveScan") == 0, "a registered creator still answers");
            }
        }
        check(open(autoregisterPath, RTLD_NOW | RTLD_LOCAL) != nullptr, "the library loads again");
        checkRegisteredOnce(*registry, "dlclosed and loaded again");
        check(registry->refused == 0, "nothing registered twice");
    } else {
        std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
        return 2;
    }
    return checks::report();
}

#endif
