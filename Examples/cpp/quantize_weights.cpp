// quantize_weights.cpp: quantize a weight matrix to int4 (blocks of 32) with QuantKit from C++,
// with the quantized buffers owned by a small RAII class. Build: see Examples/README.md.
#include "quantkit.h"

#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// Turns a failed QuantKit call into an exception carrying QuantKit's message.
void check(qk_status status, const char *what) {
    if (status != QK_OK)
        throw std::runtime_error(std::string(what) + ": " + qk_status_string(status) + ": " + qk_last_error());
}

// A quantized tensor: the parameters, its shape, and the buffers, freed with the object.
class QuantizedTensor {
public:
    QuantizedTensor(const qk_quant_params &params, std::vector<int64_t> shape)
        : params_(params), shape_(std::move(shape)) {
        qk_quantized_layout layout{};
        layout.struct_size = sizeof layout;
        check(qk_quantized_layout_get(&params_, static_cast<int32_t>(shape_.size()), shape_.data(), &layout),
              "qk_quantized_layout_get");
        data_.resize(layout.data_bytes);
        scales_.resize(layout.scales_bytes);
        zero_points_.resize(layout.zero_points_bytes);
    }

    // Quantizes `weights` (row-major fp32 of this tensor's shape) into the buffers.
    void quantize(const std::vector<float> &weights) {
        qk_tensor input = view(const_cast<float *>(weights.data()));
        qk_quantized q = buffers();
        check(qk_quantize(&params_, &input, &q), "qk_quantize");
    }

    qk_error_stats error(const std::vector<float> &weights) const {
        qk_tensor original = view(const_cast<float *>(weights.data()));
        qk_quantized q = buffers();
        qk_error_stats stats{};
        stats.struct_size = sizeof stats;
        check(qk_quantization_error(&params_, &original, &q, &stats), "qk_quantization_error");
        return stats;
    }

    std::vector<float> dequantize() const {
        std::vector<float> out(element_count());
        qk_tensor output = view(out.data());
        qk_quantized q = buffers();
        check(qk_dequantize(&params_, &q, &output), "qk_dequantize");
        return out;
    }

    size_t bytes() const { return data_.size() + scales_.size() + zero_points_.size(); }
    size_t element_count() const {
        size_t n = 1;
        for (int64_t d : shape_) n *= static_cast<size_t>(d);
        return n;
    }

private:
    qk_tensor view(float *data) const {
        qk_tensor t{};
        t.data = data;
        t.dtype = QK_DTYPE_F32;
        t.ndim = static_cast<int32_t>(shape_.size());
        t.shape = shape_.data();
        t.strides = nullptr; // row-major
        return t;
    }

    // The C view of our buffers; `const` callers only pass it where QuantKit reads it.
    qk_quantized buffers() const {
        auto *self = const_cast<QuantizedTensor *>(this);
        qk_quantized q{};
        q.struct_size = sizeof q;
        q.data = self->data_.data();
        q.data_bytes = data_.size();
        q.scales = self->scales_.data();
        q.scales_bytes = scales_.size();
        q.zero_points = zero_points_.empty() ? nullptr : self->zero_points_.data();
        q.zero_points_bytes = zero_points_.size();
        return q;
    }

    qk_quant_params params_;
    std::vector<int64_t> shape_;
    std::vector<unsigned char> data_, scales_, zero_points_;
};

} // namespace

int main() {
    const int64_t rows = 256, cols = 512;
    std::vector<float> weights(static_cast<size_t>(rows * cols));
    std::mt19937 rng(42);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    for (float &w : weights) w = normal(rng);

    try {
        // The caller sets struct_size of every QuantKit struct, also before qk_quant_params_init.
        qk_quant_params params{};
        params.struct_size = sizeof params;
        check(qk_quant_params_init(&params, QK_FORMAT_INT4), "qk_quant_params_init");
        params.block_size = 32;

        QuantizedTensor qt(params, {rows, cols});
        qt.quantize(weights);
        qk_error_stats stats = qt.error(weights);
        std::vector<float> restored = qt.dequantize();

        std::printf("int4, blocks of 32: %zu bytes of fp32 -> %zu bytes, %.1fx smaller\n",
                    weights.size() * sizeof(float), qt.bytes(),
                    static_cast<double>(weights.size() * sizeof(float)) / static_cast<double>(qt.bytes()));
        std::printf("error: max %.6f, mean %.6f, rmse %.6f, SQNR %.2f dB\n", stats.max_abs_error,
                    stats.mean_abs_error, stats.rmse, stats.sqnr_db);
        std::printf("w[0][0] = %.5f, restored %.5f\n", weights[0], restored[0]);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    return 0;
}
