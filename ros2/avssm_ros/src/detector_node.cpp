// avssm_ros::DetectorNode: sensor_msgs/Image (or CompressedImage) in, vision_msgs/Detection2DArray out, through
// libavssm_infer (avssm/csrc/infer). The node converts messages and parameters only: preprocessing, TensorRT,
// postprocessing and timing are the library's, as `avssm run` does them.
#include <avssm/infer.h>

#include <diagnostic_msgs/msg/diagnostic_array.hpp>
#include <rclcpp/rclcpp.hpp>
#include <rclcpp_components/register_node_macro.hpp>
#include <sensor_msgs/msg/compressed_image.hpp>
#include <sensor_msgs/msg/image.hpp>
#include <std_msgs/msg/header.hpp>
#include <vision_msgs/msg/detection2_d_array.hpp>

#include <opencv2/imgcodecs.hpp>

#include <dlfcn.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace avssm_ros {

class DetectorNode : public rclcpp::Node {
public:
    explicit DetectorNode(rclcpp::NodeOptions const& options) : rclcpp::Node("avssm_detector", options) {
        std::string const engine = declare_parameter<std::string>("engine_path", "");
        auto const plugins = declare_parameter<std::vector<std::string>>("plugin_paths", std::vector<std::string>{""});
        avssm_postprocess_default_params(&params_);
        params_.score_threshold = static_cast<float>(declare_parameter<double>("score_threshold", params_.score_threshold));
        params_.iou_threshold = static_cast<float>(declare_parameter<double>("iou_threshold", params_.iou_threshold));
        params_.max_detections = static_cast<int32_t>(declare_parameter<int64_t>("max_detections", params_.max_detections));
        bool const compressed = declare_parameter<bool>("use_compressed", false);
        auto const depth = declare_parameter<int64_t>("qos_depth", 1);
        std::string const reliability = declare_parameter<std::string>("qos_reliability", "best_effort");
        double const diagnosticsPeriod = declare_parameter<double>("diagnostics_period_s", 1.0);

        // Every parameter is checked before the engine opens, so a bad one leaves nothing open.
        if (engine.empty()) throw std::invalid_argument("parameter engine_path: set it to an engine built by avssm build");
        if (!(diagnosticsPeriod >= 0.0)) {
            throw std::invalid_argument("parameter diagnostics_period_s: " + std::to_string(diagnosticsPeriod) +
                                        ", expected seconds > 0, or 0 for no diagnostics");
        }
        rclcpp::QoS qos(rclcpp::KeepLast(static_cast<size_t>(depth > 0 ? depth : 1)));
        if (reliability == "best_effort") {
            qos.best_effort();
        } else if (reliability == "reliable") {
            qos.reliable();
        } else {
            throw std::invalid_argument("parameter qos_reliability: '" + reliability + "', expected best_effort or reliable");
        }
        for (std::string const& path : plugins) {
            if (!path.empty() && dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
                throw std::runtime_error("parameter plugin_paths: " + path + " cannot be loaded: " + dlerror());
            }
        }
        if (avssm_detector_open(engine.c_str(), &detector_) != AVSSM_OK) throw std::runtime_error(avssm_last_error());
        found_.resize(static_cast<size_t>(params_.max_detections));
        detections_ = create_publisher<vision_msgs::msg::Detection2DArray>("~/output/detections", rclcpp::QoS(10));
        diagnostics_ = create_publisher<diagnostic_msgs::msg::DiagnosticArray>("/diagnostics", rclcpp::QoS(10));
        if (compressed) {
            compressedInput_ = create_subscription<sensor_msgs::msg::CompressedImage>(
                "~/input/image/compressed", qos,
                [this](sensor_msgs::msg::CompressedImage::ConstSharedPtr msg) { onCompressed(*msg); });
        } else {
            input_ = create_subscription<sensor_msgs::msg::Image>(
                "~/input/image", qos, [this](sensor_msgs::msg::Image::ConstSharedPtr msg) { onImage(*msg); });
        }
        if (diagnosticsPeriod > 0.0) {  // 0: off (a zero-period timer would spin the executor)
            diagnosticsTimer_ = create_wall_timer(std::chrono::duration<double>(diagnosticsPeriod),
                                                  [this] { publishDiagnostics(); });
        }
    }

    ~DetectorNode() override { avssm_detector_close(detector_); }

private:
    void onImage(sensor_msgs::msg::Image const& msg) {
        avssm_pixel_format format;
        if (msg.encoding == "bgr8") {
            format = AVSSM_PIXEL_BGR8;
        } else if (msg.encoding == "rgb8") {
            format = AVSSM_PIXEL_RGB8;
        } else if (msg.encoding == "mono8") {
            format = AVSSM_PIXEL_GRAY8;
        } else {
            RCLCPP_ERROR_THROTTLE(get_logger(), *get_clock(), 5000, "image encoding '%s' is not supported: publish bgr8, "
                                  "rgb8 or mono8 (or set use_compressed)", msg.encoding.c_str());
            return;
        }
        avssm_frame const frame{msg.data.data(), static_cast<int32_t>(msg.width), static_cast<int32_t>(msg.height),
                                static_cast<int64_t>(msg.step), format, AVSSM_MEMORY_HOST};
        detect(frame, msg.header);
    }

    void onCompressed(sensor_msgs::msg::CompressedImage const& msg) {
        cv::Mat const image = cv::imdecode(cv::Mat(1, static_cast<int>(msg.data.size()), CV_8UC1,
                                                   const_cast<uint8_t*>(msg.data.data())),
                                           cv::IMREAD_COLOR);
        if (image.empty()) {
            RCLCPP_ERROR_THROTTLE(get_logger(), *get_clock(), 5000, "compressed image (%s) cannot be decoded",
                                  msg.format.c_str());
            return;
        }
        avssm_frame const frame{image.data, image.cols, image.rows, static_cast<int64_t>(image.step), AVSSM_PIXEL_BGR8,
                                AVSSM_MEMORY_HOST};
        detect(frame, msg.header);
    }

    void detect(avssm_frame const& frame, std_msgs::msg::Header const& header) {
        int32_t count = 0;
        if (avssm_detector_detect(detector_, &frame, &params_, nullptr, found_.data(), params_.max_detections, &count) !=
            AVSSM_OK) {
            RCLCPP_ERROR_THROTTLE(get_logger(), *get_clock(), 5000, "%s", avssm_last_error());
            return;
        }
        vision_msgs::msg::Detection2DArray out;
        out.header = header;
        out.detections.reserve(static_cast<size_t>(count));
        for (int32_t i = 0; i < count; ++i) {
            avssm_detection const& d = found_[static_cast<size_t>(i)];
            vision_msgs::msg::Detection2D det;
            det.header = header;
            det.bbox.center.position.x = 0.5 * (d.x1 + d.x2);
            det.bbox.center.position.y = 0.5 * (d.y1 + d.y2);
            det.bbox.size_x = d.x2 - d.x1;
            det.bbox.size_y = d.y2 - d.y1;
            vision_msgs::msg::ObjectHypothesisWithPose hypothesis;
            char const* name = avssm_detector_class_name(detector_, d.label);
            hypothesis.hypothesis.class_id = name ? name : std::to_string(d.label);
            hypothesis.hypothesis.score = d.score;
            det.results.push_back(hypothesis);
            out.detections.push_back(std::move(det));
        }
        detections_->publish(out);
        avssm_detector_timing(detector_, &lastTiming_);
        lastLatencyMs_ = (now() - rclcpp::Time(header.stamp, get_clock()->get_clock_type())).seconds() * 1000.0;
        ++frames_;
    }

    void publishDiagnostics() {
        diagnostic_msgs::msg::DiagnosticArray array;
        array.header.stamp = now();
        diagnostic_msgs::msg::DiagnosticStatus status;
        status.name = std::string(get_fully_qualified_name()) + ": detection";
        status.hardware_id = "avssm_infer";
        status.level = frames_ > 0 ? diagnostic_msgs::msg::DiagnosticStatus::OK : diagnostic_msgs::msg::DiagnosticStatus::WARN;
        status.message = frames_ > 0 ? "running" : "no image received yet";
        auto add = [&status](std::string const& key, double value) {
            diagnostic_msgs::msg::KeyValue kv;
            kv.key = key;
            kv.value = std::to_string(value);
            status.values.push_back(kv);
        };
        add("frames", static_cast<double>(frames_));
        add("latency_from_stamp_ms", lastLatencyMs_);
        add("preprocess_ms", lastTiming_.preprocess_ms);
        add("inference_ms", lastTiming_.inference_ms);
        add("postprocess_ms", lastTiming_.postprocess_ms);
        add("end_to_end_ms", lastTiming_.end_to_end_ms);
        array.status.push_back(status);
        diagnostics_->publish(array);
    }

    avssm_detector* detector_{nullptr};
    avssm_postprocess_params params_{};
    std::vector<avssm_detection> found_;
    avssm_timing lastTiming_{};
    double lastLatencyMs_{0.0};
    uint64_t frames_{0};
    rclcpp::Subscription<sensor_msgs::msg::Image>::SharedPtr input_;
    rclcpp::Subscription<sensor_msgs::msg::CompressedImage>::SharedPtr compressedInput_;
    rclcpp::Publisher<vision_msgs::msg::Detection2DArray>::SharedPtr detections_;
    rclcpp::Publisher<diagnostic_msgs::msg::DiagnosticArray>::SharedPtr diagnostics_;
    rclcpp::TimerBase::SharedPtr diagnosticsTimer_;
};

}  // namespace avssm_ros

RCLCPP_COMPONENTS_REGISTER_NODE(avssm_ros::DetectorNode)
