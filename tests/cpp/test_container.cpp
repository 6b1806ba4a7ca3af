// The C container API from C++17: a builder owned by std::unique_ptr, a container opened in
// place from a std::vector, names as std::string_view, every tensor through an expq_view.
#include "expquant.h"

#include <cstdio>
#include <memory>
#include <string_view>
#include <vector>

namespace {

int failures = 0;

void check(bool ok, const char *what) {
    if (!ok) {
        std::fprintf(stderr, "check failed: %s\n", what);
        ++failures;
    }
}

struct BuilderDeleter {
    void operator()(expq_container_builder *b) const { expq_container_builder_free(b); }
};
struct TensorDeleter {
    void operator()(expq_tensor *t) const { expq_tensor_free(t); }
};
using Builder = std::unique_ptr<expq_container_builder, BuilderDeleter>;
using Tensor = std::unique_ptr<expq_tensor, TensorDeleter>;

Tensor quantize(size_t rows, size_t cols, float scale) {
    std::vector<float> w(rows * cols);
    for (size_t i = 0; i < w.size(); ++i) w[i] = scale * static_cast<float>(int(i % 13) - 6);
    expq_config config = expq_config_default(EXPQ_SCHEME_LINEAR, 3);
    expq_tensor *t = nullptr;
    check(expq_quantize(w.data(), rows, cols, &config, &t) == EXPQ_STATUS_OK, "quantize");
    return Tensor(t);
}

expq_status add(expq_container_builder *b, std::string_view name, const expq_tensor *t) {
    return expq_container_builder_add_tensor(b, reinterpret_cast<const uint8_t *>(name.data()),
                                             name.size(), t);
}

}  // namespace

int main() {
    Builder b;
    {
        expq_container_builder *raw = nullptr;
        check(expq_container_builder_new(&raw) == EXPQ_STATUS_OK, "builder");
        b.reset(raw);
    }
    Tensor layers[3] = {quantize(4, 9, 0.5f), quantize(3, 5, 0.25f), quantize(2, 7, 1.0f)};
    const std::string_view names[3] = {"layer.2", "layer.0", "layer.1"};
    for (int i = 0; i < 3; ++i) check(add(b.get(), names[i], layers[i].get()) == EXPQ_STATUS_OK, "add");
    const float norm[4] = {1.0f, 0.5f, 0.25f, 0.125f};
    check(expq_container_builder_add_f32(b.get(), reinterpret_cast<const uint8_t *>("norm"), 4,
                                         norm, 4, 2, 2) == EXPQ_STATUS_OK,
          "add f32");

    size_t needed = 0;
    check(expq_container_builder_write(b.get(), nullptr, 0, &needed) ==
              EXPQ_STATUS_BUFFER_TOO_SMALL,
          "size query");
    std::vector<uint8_t> bytes(needed);
    size_t written = 0;
    check(expq_container_builder_write(b.get(), bytes.data(), bytes.size(), &written) ==
                  EXPQ_STATUS_OK &&
              written == needed,
          "write");
    b.reset();  // the container needs nothing from the builder

    expq_container_view c{};
    check(expq_container_view_init(bytes.data(), bytes.size(), EXPQ_VERIFICATION_TRUSTED, &c) ==
              EXPQ_STATUS_OK,
          "open");
    size_t count = 0;
    expq_container_view_count(&c, &count);
    check(count == 4, "count");
    std::vector<std::string_view> seen;
    for (size_t i = 0; i < count; ++i) {
        const uint8_t *name = nullptr;
        size_t len = 0;
        check(expq_container_view_name(&c, i, &name, &len) == EXPQ_STATUS_OK, "name");
        seen.emplace_back(reinterpret_cast<const char *>(name), len);
        expq_entry_kind kind{};
        expq_container_view_kind(&c, i, &kind);
        if (kind != EXPQ_ENTRY_KIND_QUANTIZED) continue;
        expq_view v{};
        check(expq_container_view_tensor(&c, i, &v) == EXPQ_STATUS_OK, "tensor");
        std::vector<float> x(expq_view_cols(&v), 1.0f), y(expq_view_rows(&v));
        check(expq_view_gemv(&v, x.data(), x.size(), y.data(), y.size()) == EXPQ_STATUS_OK,
              "gemv");
    }
    check(seen == std::vector<std::string_view>{"layer.0", "layer.1", "layer.2", "norm"},
          "names sorted");
    const float *in_place = nullptr;
    size_t rows = 0, cols = 0;
    check(expq_container_view_f32(&c, 3, &in_place, &rows, &cols) == EXPQ_STATUS_OK &&
              rows == 2 && cols == 2 && in_place[3] == 0.125f,
          "f32 in place");
    if (failures != 0) return 1;
    std::printf("all checks passed\n");
    return 0;
}
