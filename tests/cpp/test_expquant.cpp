// C++17 test of the expquant C ABI: RAII ownership of expq_tensor, exceptions carrying the
// last error message, row-range GEMV split over std::thread workers, serialized tensors read
// through a stack-allocated expq_view, and calibrated quantization. Built by
// tests/c_abi.rs with `c++ -std=c++17 -Wall -Wextra -Werror -pedantic -Iinclude`, linked
// against the shared and the static library. Exits nonzero on any failure.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "expquant.h"

static_assert(EXPQ_VERSION_MAJOR * 10000L + EXPQ_VERSION_MINOR * 100L + EXPQ_VERSION_PATCH >= 100L,
              "the version macros are integer constant expressions (and at least 0.1.0)");
static_assert(EXPQ_HEADER_LEN == 64 && EXPQ_FORMAT_VERSION == 2, "format constants");

namespace {

int failures = 0;

#define CHECK(cond, what)                                                              \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            std::fprintf(stderr, "%s:%d: check failed: %s: %s\n", __FILE__, __LINE__, \
                         #cond, std::string(what).c_str());                            \
            ++failures;                                                                \
        }                                                                              \
    } while (0)

std::string last_error() {
    std::string message(expq_last_error_message(nullptr, 0), '\0');
    // Writes message.size() bytes plus the NUL, which std::string keeps room for.
    expq_last_error_message(&message[0], message.size() + 1);
    return message;
}

struct Error : std::runtime_error {
    expq_status status;
    Error(expq_status s, const std::string& message) : std::runtime_error(message), status(s) {}
};

void check(expq_status status) {
    if (status != EXPQ_STATUS_OK) throw Error(status, last_error());
}

struct TensorDeleter {
    void operator()(expq_tensor* t) const noexcept { expq_tensor_free(t); }
};

// Owns an expq_tensor; freed exactly once, however the scope is left.
class Tensor {
  public:
    Tensor(const std::vector<float>& w, size_t rows, size_t cols, const expq_config& config) {
        expq_tensor* raw = nullptr;
        check(expq_quantize(w.data(), rows, cols, &config, &raw));
        handle_.reset(raw);
    }
    // Quantizes with input statistics (sq_mean may be empty) and returns the bias correction.
    static Tensor calibrated(const std::vector<float>& w, size_t rows, size_t cols,
                             const expq_config& config, const std::vector<float>& mean,
                             const std::vector<float>& sq_mean, std::vector<float>& bias) {
        std::vector<float> correction(rows);
        expq_tensor* raw = nullptr;
        check(expq_quantize_calibrated(w.data(), rows, cols, &config, mean.data(), mean.size(),
                                       sq_mean.empty() ? nullptr : sq_mean.data(), sq_mean.size(),
                                       correction.data(), correction.size(), &raw));
        bias = std::move(correction);
        return Tensor(raw);
    }
    static Tensor deserialize(const std::vector<uint8_t>& bytes) {
        expq_tensor* raw = nullptr;
        check(expq_tensor_deserialize(bytes.data(), bytes.size(), &raw));
        return Tensor(raw);
    }
    // The stored form: ask for the size, then write.
    std::vector<uint8_t> serialize() const {
        size_t need = 0;
        const expq_status status = expq_tensor_serialize(handle_.get(), nullptr, 0, &need);
        if (status != EXPQ_STATUS_BUFFER_TOO_SMALL) check(status);
        std::vector<uint8_t> bytes(need);
        size_t written = 0;
        check(expq_tensor_serialize(handle_.get(), bytes.data(), bytes.size(), &written));
        bytes.resize(written);
        return bytes;
    }
    size_t rows() const { return expq_tensor_rows(handle_.get()); }
    size_t cols() const { return expq_tensor_cols(handle_.get()); }
    size_t group_count() const { return expq_tensor_group_count(handle_.get()); }
    std::vector<float> levels(size_t group) const {
        std::vector<float> out(EXPQ_MAX_LEVELS);
        size_t written = 0;
        check(expq_tensor_group_levels(handle_.get(), group, out.data(), out.size(), &written));
        out.resize(written);
        return out;
    }
    std::vector<uint8_t> packed_codes() const {
        const uint8_t* codes = nullptr;
        size_t codes_len = 0;
        check(expq_tensor_packed_codes(handle_.get(), &codes, &codes_len));
        return std::vector<uint8_t>(codes, codes + codes_len);
    }
    std::vector<float> dequantize() const {
        std::vector<float> out(rows() * cols());
        check(expq_tensor_dequantize(handle_.get(), out.data(), out.size()));
        return out;
    }
    std::vector<float> gemv(const std::vector<float>& x) const {
        std::vector<float> y(rows());
        check(expq_tensor_gemv(handle_.get(), x.data(), x.size(), y.data(), y.size()));
        return y;
    }
    void gemv_rows(const std::vector<float>& x, size_t begin, size_t end, float* y) const {
        check(expq_tensor_gemv_rows(handle_.get(), x.data(), x.size(), begin, end, y, end - begin));
    }
    const expq_tensor* get() const { return handle_.get(); }

  private:
    explicit Tensor(expq_tensor* raw) : handle_(raw) {}
    std::unique_ptr<expq_tensor, TensorDeleter> handle_;
};

// Stored bytes and the expq_view that borrows them, kept together so that the view cannot
// outlive its buffer. The view is a plain struct inside this object: no allocation by the
// library and nothing to free. Not copyable or movable (the view points into bytes_).
class StoredTensor {
  public:
    explicit StoredTensor(std::vector<uint8_t> bytes) : bytes_(std::move(bytes)) {
        check(expq_view_init(bytes_.data(), bytes_.size(), &view_));
    }
    StoredTensor(const StoredTensor&) = delete;
    StoredTensor& operator=(const StoredTensor&) = delete;

    size_t rows() const { return expq_view_rows(&view_); }
    size_t cols() const { return expq_view_cols(&view_); }
    size_t group_count() const { return expq_view_group_count(&view_); }
    std::vector<float> levels(size_t group) const {
        std::vector<float> out(EXPQ_MAX_LEVELS);
        size_t written = 0;
        check(expq_view_group_levels(&view_, group, out.data(), out.size(), &written));
        out.resize(written);
        return out;
    }
    std::vector<uint8_t> packed_codes() const {
        const uint8_t* codes = nullptr;
        size_t codes_len = 0;
        check(expq_view_packed_codes(&view_, &codes, &codes_len));
        return std::vector<uint8_t>(codes, codes + codes_len);
    }
    std::vector<float> dequantize() const {
        std::vector<float> out(rows() * cols());
        check(expq_view_dequantize(&view_, out.data(), out.size()));
        return out;
    }
    std::vector<float> gemv(const std::vector<float>& x) const {
        std::vector<float> y(rows());
        check(expq_view_gemv(&view_, x.data(), x.size(), y.data(), y.size()));
        return y;
    }
    void gemv_rows(const std::vector<float>& x, size_t begin, size_t end, float* y) const {
        check(expq_view_gemv_rows(&view_, x.data(), x.size(), begin, end, y, end - begin));
    }

  private:
    std::vector<uint8_t> bytes_;
    expq_view view_{};
};

std::vector<float> seeded(size_t n, unsigned seed) {
    std::vector<float> v(n);
    unsigned s = seed;
    for (auto& x : v) {
        s = s * 1664525u + 1013904223u;
        x = static_cast<float>((s >> 8) / 8388608.0 - 1.0);
    }
    return v;
}

void test_dequantize_and_gemv() {
    const size_t rows = 33, cols = 70;
    const auto w = seeded(rows * cols, 7);
    const auto x = seeded(cols, 8);
    expq_config config = expq_config_default(EXPQ_SCHEME_EXPONENTIAL, 5);
    config.scale_rule = EXPQ_SCALE_RULE_MSE;
    const Tensor t(w, rows, cols, config);
    CHECK(t.rows() == rows && t.cols() == cols, "shape");
    CHECK(expq_tensor_bits(t.get()) == 5, "bits");

    const auto deq = t.dequantize();
    double err = 0.0, sig = 0.0;
    for (size_t i = 0; i < w.size(); ++i) {
        err += (w[i] - deq[i]) * double(w[i] - deq[i]);
        sig += w[i] * double(w[i]);
    }
    // 5-bit exponential levels on uniform data: well above 15 dB SQNR.
    CHECK(10.0 * std::log10(sig / err) > 15.0, "SQNR " + std::to_string(10.0 * std::log10(sig / err)));

    const auto y = t.gemv(x);
    for (size_t r = 0; r < rows; ++r) {
        double ref = 0.0, mag = 0.0;
        for (size_t j = 0; j < cols; ++j) {
            ref += double(deq[r * cols + j]) * x[j];
            mag += std::fabs(double(deq[r * cols + j]) * x[j]);
        }
        CHECK(std::fabs(y[r] - ref) <= 1e-5 * mag + 1e-7, "row " + std::to_string(r));
    }

    // Four threads, each its own row range of one shared tensor: exactly the full GEMV.
    std::vector<float> y2(rows, -1.0f);
    std::vector<std::thread> workers;
    const size_t parts = 4;
    for (size_t p = 0; p < parts; ++p) {
        const size_t begin = rows * p / parts, end = rows * (p + 1) / parts;
        workers.emplace_back([&, begin, end] { t.gemv_rows(x, begin, end, y2.data() + begin); });
    }
    for (auto& worker : workers) worker.join();
    CHECK(y2 == y, "threaded gemv_rows equals gemv");
}

void test_errors_as_exceptions() {
    const std::vector<float> w = {1.0f, std::nanf(""), 0.5f, -0.5f};
    try {
        Tensor t(w, 2, 2, expq_config_default(EXPQ_SCHEME_LINEAR, 4));
        CHECK(false, "a NaN weight was accepted");
    } catch (const Error& e) {
        CHECK(e.status == EXPQ_STATUS_NON_FINITE, "status");
        CHECK(std::string(e.what()).find("index 1") != std::string::npos, e.what());
    }
    try {
        expq_config config = expq_config_default(EXPQ_SCHEME_LINEAR, 4);
        config.scheme = static_cast<expq_scheme>(7);
        Tensor t({1.0f, 2.0f}, 1, 2, config);
        CHECK(false, "scheme 7 was accepted");
    } catch (const Error& e) {
        CHECK(e.status == EXPQ_STATUS_INVALID_ARGUMENT, "status");
        CHECK(std::string(e.what()).find("scheme") != std::string::npos, e.what());
    }
    const Tensor t({1.0f, 2.0f, 3.0f, 4.0f}, 2, 2, expq_config_default(EXPQ_SCHEME_LINEAR, 2));
    float y[2] = {0.0f, 0.0f};
    try {
        t.gemv_rows({1.0f, 1.0f}, 0, 3, y);
        CHECK(false, "row range 0..3 of 2 rows was accepted");
    } catch (const Error& e) {
        CHECK(e.status == EXPQ_STATUS_INVALID_ARGUMENT, "status");
        CHECK(std::string(e.what()).find("0..3") != std::string::npos, e.what());
    }
}

void test_storage_and_view() {
    const size_t rows = 21, cols = 45;
    const auto w = seeded(rows * cols, 11);
    const auto x = seeded(cols, 12);
    expq_config config = expq_config_default(EXPQ_SCHEME_EXPONENTIAL, 4);
    config.granularity = EXPQ_GRANULARITY_PER_GROUP;
    config.group_size = 16;
    const Tensor t(w, rows, cols, config);
    const auto deq = t.dequantize();
    const auto bytes = t.serialize();

    // Deserialized and viewed: the same values, bit for bit.
    CHECK(Tensor::deserialize(bytes).dequantize() == deq, "deserialized values");
    const StoredTensor stored(bytes);
    CHECK(stored.rows() == rows && stored.cols() == cols, "view shape");
    CHECK(stored.dequantize() == deq, "view values");
    // The view's getters read the same tensor as the owned one's.
    CHECK(stored.group_count() == t.group_count() && stored.group_count() == rows * 3,
          "view group count");
    CHECK(stored.packed_codes() == t.packed_codes(), "view packed codes");
    for (size_t g = 0; g < t.group_count(); ++g) {
        CHECK(stored.levels(g) == t.levels(g) && t.levels(g).size() == 15,
              "levels of group " + std::to_string(g));
    }

    // GEMV from the view: within float rounding of the tensor's, and split over threads
    // (one shared view, each thread its own rows) exactly equal to the full view GEMV.
    const auto y = t.gemv(x);
    const auto yv = stored.gemv(x);
    for (size_t r = 0; r < rows; ++r) {
        double mag = 0.0;
        for (size_t j = 0; j < cols; ++j) mag += std::fabs(double(deq[r * cols + j]) * x[j]);
        CHECK(std::fabs(yv[r] - y[r]) <= 1e-5 * mag + 1e-7, "view row " + std::to_string(r));
    }
    std::vector<float> y2(rows, -1.0f);
    std::vector<std::thread> workers;
    for (size_t p = 0; p < 3; ++p) {
        const size_t begin = rows * p / 3, end = rows * (p + 1) / 3;
        workers.emplace_back([&, begin, end] { stored.gemv_rows(x, begin, end, y2.data() + begin); });
    }
    for (auto& worker : workers) worker.join();
    CHECK(y2 == yv, "threaded view gemv_rows equals view gemv");

    // A value-initialized view is rejected, not used.
    const expq_view empty{};
    float out[1] = {0.0f};
    CHECK(expq_view_dequantize(&empty, out, 1) == EXPQ_STATUS_INVALID_ARGUMENT,
          "uninitialized view");

    // Corrupted bytes surface as exceptions with the status and the failed check.
    auto flipped = bytes;
    flipped[flipped.size() / 2] ^= 0x04;
    try {
        const StoredTensor bad(flipped);
        CHECK(false, "a flipped byte was accepted");
    } catch (const Error& e) {
        CHECK(e.status == EXPQ_STATUS_CORRUPT_DATA, "status");
        CHECK(std::string(e.what()).find("checksum") != std::string::npos, e.what());
    }
    auto future = bytes;
    future[4] = EXPQ_FORMAT_VERSION + 1;
    try {
        Tensor::deserialize(future);
        CHECK(false, "a future format version was accepted");
    } catch (const Error& e) {
        CHECK(e.status == EXPQ_STATUS_UNSUPPORTED_VERSION, "status");
    }
}

void test_calibrated() {
    // Data-free statistics: each input channel is a BatchNorm output (beta_j, gamma_j)
    // through ReLU6.
    const size_t rows = 9, cols = 24;
    const auto w = seeded(rows * cols, 21);
    std::vector<float> mean(cols), sq_mean(cols);
    for (size_t j = 0; j < cols; ++j) {
        const float beta = 0.25f * float(j % 7) - 0.5f, gamma = 0.5f + 0.1f * float(j % 3);
        check(expq_relu_moments(beta, gamma, 6.0f, &mean[j], &sq_mean[j]));
        CHECK(mean[j] > 0.0f && sq_mean[j] >= mean[j] * mean[j] * 0.999f, "moments");
    }
    expq_config config = expq_config_default(EXPQ_SCHEME_EXPONENTIAL, 4);
    config.scale_rule = EXPQ_SCALE_RULE_OUTPUT_MSE;
    std::vector<float> bias;
    const Tensor t = Tensor::calibrated(w, rows, cols, config, mean, sq_mean, bias);
    const auto q = t.dequantize();
    for (size_t r = 0; r < rows; ++r) {
        double shift = 0.0, mag = 0.0;
        for (size_t j = 0; j < cols; ++j) {
            const double term = (double(q[r * cols + j]) - w[r * cols + j]) * mean[j];
            shift += term;
            mag += std::fabs(term);
        }
        CHECK(std::fabs(bias[r] + shift) <= 1e-6 * mag + 1e-7, "correction " + std::to_string(r));
    }
    // OUTPUT_MSE without E[x^2] is refused.
    try {
        Tensor::calibrated(w, rows, cols, config, mean, {}, bias);
        CHECK(false, "OUTPUT_MSE without mean squares was accepted");
    } catch (const Error& e) {
        CHECK(e.status == EXPQ_STATUS_INVALID_ARGUMENT, "status");
    }
}

}  // namespace

int main() {
    try {
        test_dequantize_and_gemv();
        test_errors_as_exceptions();
        test_storage_and_view();
        test_calibrated();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "unexpected exception: %s\n", e.what());
        return 1;
    }
    if (failures != 0) {
        std::fprintf(stderr, "test_expquant (C++): %d check(s) failed\n", failures);
        return 1;
    }
    std::printf("test_expquant (C++): all checks passed (expquant %s)\n", expq_version());
    return 0;
}
