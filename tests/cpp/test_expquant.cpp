// C++17 test of the expquant C ABI: RAII ownership of expq_tensor, exceptions carrying the
// last error message, and row-range GEMV split over std::thread workers. Built by
// tests/c_abi.rs with `c++ -std=c++17 -Wall -Wextra -Werror -pedantic -Iinclude`, linked
// against the shared and the static library. Exits nonzero on any failure.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "expquant.h"

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
    size_t rows() const { return expq_tensor_rows(handle_.get()); }
    size_t cols() const { return expq_tensor_cols(handle_.get()); }
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
    std::unique_ptr<expq_tensor, TensorDeleter> handle_;
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

}  // namespace

int main() {
    try {
        test_dequantize_and_gemv();
        test_errors_as_exceptions();
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
