// The stored digits CNN (data/digits_cnn_exp4.exq) from C++17 through the expquant C API:
// the container is mapped read-only and opened in place, every weight matrix stays packed and
// is multiplied on its packed codes (a convolution is im2col, then one expq_view_gemm over
// every output position; a dense layer is one expq_view_gemv), and the biases are read in place as f32 entries. Prints top-1 and the prediction
// of every image, in the format of `cargo run --example export_model -- predict`, which
// scripts/check_cpp.sh compares it with.
//
// Usage: digits_cnn CONTAINER IMAGES [N]
//   IMAGES: records of 64 pixel bytes (0..=16) and a label byte (data/README.md).
#include "expquant.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr size_t kSide = 8;
constexpr size_t kPixels = kSide * kSide;
constexpr size_t kRecord = kPixels + 1;
constexpr size_t kClasses = 10;

// The library's last error message on this thread, for exceptions.
std::string last_error(const char *what) {
    std::array<char, 512> buf{};
    expq_last_error_message(buf.data(), buf.size());
    return std::string(what) + ": " + buf.data();
}

void check(expq_status s, const char *what) {
    if (s != EXPQ_STATUS_OK) throw std::runtime_error(last_error(what));
}

// A file mapped read-only; unmapped when it goes out of scope.
class Mapping {
public:
    explicit Mapping(const char *path) {
        int fd = ::open(path, O_RDONLY);
        if (fd < 0) throw std::runtime_error(std::string("cannot open ") + path);
        struct stat st {};
        if (::fstat(fd, &st) != 0 || st.st_size <= 0) {
            ::close(fd);
            throw std::runtime_error(std::string("cannot size ") + path);
        }
        size_ = static_cast<size_t>(st.st_size);
        void *p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
        ::close(fd);  // the mapping keeps the file open
        if (p == MAP_FAILED) throw std::runtime_error(std::string("cannot map ") + path);
        data_ = static_cast<const uint8_t *>(p);
    }
    ~Mapping() { ::munmap(const_cast<uint8_t *>(data_), size_); }
    Mapping(const Mapping &) = delete;
    Mapping &operator=(const Mapping &) = delete;

    const uint8_t *data() const { return data_; }
    size_t size() const { return size_; }

private:
    const uint8_t *data_ = nullptr;
    size_t size_ = 0;
};

// One layer: its packed weights and its biases, both borrowed from the mapping.
struct Layer {
    expq_view weight{};
    const float *bias = nullptr;
    size_t rows = 0;
    size_t cols = 0;
};

size_t find(const expq_container_view &c, std::string_view name) {
    size_t index = 0;
    bool found = false;
    check(expq_container_view_find(&c, reinterpret_cast<const uint8_t *>(name.data()),
                                   name.size(), &index, &found),
          "find");
    if (!found) throw std::runtime_error("container has no entry " + std::string(name));
    return index;
}

Layer open_layer(const expq_container_view &c, const std::string &name, size_t rows, size_t cols) {
    Layer l;
    check(expq_container_view_tensor(&c, find(c, name + ".weight"), &l.weight), "weight");
    l.rows = expq_view_rows(&l.weight);
    l.cols = expq_view_cols(&l.weight);
    size_t b_rows = 0, b_cols = 0;
    check(expq_container_view_f32(&c, find(c, name + ".bias"), &l.bias, &b_rows, &b_cols), "bias");
    if (l.rows != rows || l.cols != cols || b_rows * b_cols != rows)
        throw std::runtime_error(name + " has the wrong shape");
    return l;
}

// The (ch·9) × (side·side) patch matrix of a 3×3, stride-1, zero-padded convolution.
void im2col3x3(const std::vector<float> &in, size_t ch, size_t side, std::vector<float> &cols) {
    const size_t plane = side * side;
    cols.assign(ch * 9 * plane, 0.0f);
    for (size_t c = 0; c < ch; ++c)
        for (size_t ky = 0; ky < 3; ++ky)
            for (size_t kx = 0; kx < 3; ++kx) {
                float *dst = &cols[(c * 9 + ky * 3 + kx) * plane];
                for (size_t y = 0; y < side; ++y)
                    for (size_t x = 0; x < side; ++x) {
                        const size_t sy = y + ky, sx = x + kx;  // source pixel + (1, 1)
                        if (sy >= 1 && sy <= side && sx >= 1 && sx <= side)
                            dst[y * side + x] = in[c * plane + (sy - 1) * side + (sx - 1)];
                    }
            }
}

// out = W · patches + bias: one GEMM over every output position (patches are cols × n,
// row-major, which is the layout expq_view_gemm takes; out comes back rows × n).
void conv(const Layer &l, const std::vector<float> &in, size_t ch, size_t side,
          std::vector<float> &out) {
    std::vector<float> cols;
    im2col3x3(in, ch, side, cols);
    const size_t n = side * side;
    out.assign(l.rows * n, 0.0f);
    check(expq_view_gemm(&l.weight, cols.data(), cols.size(), n, out.data(), out.size()), "gemm");
    for (size_t o = 0; o < l.rows; ++o)
        for (size_t p = 0; p < n; ++p) out[o * n + p] += l.bias[o];
}

void dense(const Layer &l, const std::vector<float> &in, std::vector<float> &out) {
    out.assign(l.rows, 0.0f);
    check(expq_view_gemv(&l.weight, in.data(), in.size(), out.data(), out.size()), "gemv");
    for (size_t o = 0; o < l.rows; ++o) out[o] += l.bias[o];
}

void relu(std::vector<float> &v) {
    for (float &x : v) x = x > 0.0f ? x : 0.0f;
}

// 2×2 stride-2 max pooling; ties keep the first candidate in row-major order.
std::vector<float> maxpool2(const std::vector<float> &in, size_t ch, size_t side) {
    const size_t half = side / 2;
    std::vector<float> out(ch * half * half);
    for (size_t c = 0; c < ch; ++c)
        for (size_t y = 0; y < half; ++y)
            for (size_t x = 0; x < half; ++x) {
                const size_t base = c * side * side + 2 * y * side + 2 * x;
                float best = in[base];
                for (size_t idx : {base + 1, base + side, base + side + 1})
                    if (in[idx] > best) best = in[idx];
                out[c * half * half + y * half + x] = best;
            }
    return out;
}

// Index of the largest logit; ties go to the lowest index.
size_t argmax(const std::vector<float> &v) {
    size_t best = 0;
    for (size_t i = 1; i < v.size(); ++i)
        if (v[i] > v[best]) best = i;
    return best;
}

int run(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        std::fprintf(stderr, "usage: %s CONTAINER IMAGES [N]\n", argv[0]);
        return 2;
    }
    const Mapping file(argv[1]);
    expq_container_view c{};
    check(expq_container_view_init(file.data(), file.size(), EXPQ_VERIFICATION_FULL, &c),
          "open container");
    const Layer conv1 = open_layer(c, "conv1", 16, 9);
    const Layer conv2 = open_layer(c, "conv2", 32, 16 * 9);
    const Layer conv3 = open_layer(c, "conv3", 32, 32 * 9);
    const Layer fc1 = open_layer(c, "fc1", 32, 512);
    const Layer fc2 = open_layer(c, "fc2", kClasses, 32);

    std::ifstream in(argv[2], std::ios::binary);
    const std::vector<uint8_t> images((std::istreambuf_iterator<char>(in)),
                                      std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) throw std::runtime_error(std::string("cannot read ") + argv[2]);
    size_t count = images.size() / kRecord;
    if (argc == 4) count = std::min(count, static_cast<size_t>(std::strtoul(argv[3], nullptr, 10)));

    std::string predictions;
    size_t correct = 0;
    std::vector<float> x(kPixels), a1, a2, a3, h, logits;
    for (size_t i = 0; i < count; ++i) {
        const uint8_t *rec = &images[i * kRecord];
        for (size_t j = 0; j < kPixels; ++j) {
            if (rec[j] > 16) throw std::runtime_error("test record " + std::to_string(i) + " is malformed");
            x[j] = static_cast<float>(rec[j]) / 16.0f;
        }
        conv(conv1, x, 1, kSide, a1);
        relu(a1);
        conv(conv2, a1, 16, kSide, a2);
        relu(a2);
        conv(conv3, maxpool2(a2, 32, kSide), 32, kSide / 2, a3);
        relu(a3);
        dense(fc1, a3, h);
        relu(h);
        dense(fc2, h, logits);
        const size_t p = argmax(logits);
        correct += p == rec[kPixels];
        predictions += " " + std::to_string(p);
    }
    std::printf("top-1: %zu/%zu\n", correct, count);
    std::printf("predictions:%s\n", predictions.c_str());
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
