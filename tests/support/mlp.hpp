#pragma once
/// \file
/// Test support: a small, real multi-layer perceptron on synthetic data, split into pipeline stages
/// (one dense layer per stage), and the same model trained without a pipeline as the reference.
///
/// - Layer `k` maps `widths[k]` inputs to `widths[k + 1]` outputs: `z = W x + b` with `W` row-major
///   (out × in); hidden layers apply `tanh`, the last one is linear and feeds a mean-squared-error
///   loss against a synthetic target. The last stage scales its loss gradient by the loss scale the
///   executor gives it (`set_loss_scale`: the policy's `loss_scale()`, 1 / micro-batches per update),
///   so an update applies the mean gradient of `a` micro-batches; `step()` is plain SGD. The
///   reference divides by `a` itself.
/// - Parameters, inputs and targets are pure functions of the seed, the layer / micro-batch and the
///   index (splitmix64), so every run starts from the same bits.
/// - `mlp_stage` satisfies `paci::stage`, `paci::split_backward_stage` and `paci::recompute_stage`.
///   It keeps what a backward needs per micro-batch in a map (backwards may come in any order) and
///   is strict: a second forward of a micro-batch, a backward without activations (a missing `R`),
///   a recompute in keep mode or of activations still held, a wrong buffer size — each throws
///   `std::logic_error`, so a schedule that the executor runs wrongly fails loudly.
/// - `mlp_reference` trains the unsplit model sequentially: forward and backward of each
///   micro-batch in order, gradients accumulated in that order, an update every `a` micro-batches.
///   It shares the per-layer kernels (`dense_layer`) with the stages, so a pipelined run with the
///   same summation order must match it bit for bit.

#include <paci/runtime/stage.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace paci_test {

/// splitmix64's finalizer: a well-mixed 64-bit hash.
[[nodiscard]] constexpr std::uint64_t mix64(std::uint64_t z) noexcept {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/// A deterministic number in [-1, 1) from a seed and three indices.
[[nodiscard]] inline double uniform_pm1(std::uint64_t seed, std::uint64_t a, std::uint64_t b, std::uint64_t c) noexcept {
    const std::uint64_t z = mix64(mix64(mix64(mix64(seed) ^ a) ^ b) ^ c);
    return static_cast<double>(z >> 11) * 0x1.0p-52 - 1.0;
}

/// The model and training settings shared by every stage and by the reference.
struct mlp_config {
    std::vector<int> widths{4, 8, 8, 8, 2}; ///< layer k: widths[k] -> widths[k + 1]; layers = size() - 1
    int samples = 3;                        ///< samples per micro-batch
    int accumulation = 1;                   ///< a: micro-batches per update (the loss is divided by it)
    double learning_rate = 0.1;
    std::uint64_t seed = 7;

    [[nodiscard]] int layers() const noexcept { return static_cast<int>(widths.size()) - 1; }
    [[nodiscard]] int in_of(int layer) const { return widths.at(static_cast<std::size_t>(layer)); }
    [[nodiscard]] int out_of(int layer) const { return widths.at(static_cast<std::size_t>(layer) + 1); }
};

/// The small model the runtime tests use: one layer per stage (input 4, hidden 8, output 2) and
/// `a` micro-batches per update.
[[nodiscard]] inline mlp_config mlp_config_for(int stages, int a) {
    mlp_config cfg;
    cfg.widths = {4};
    for (int s = 0; s + 1 < stages; ++s) cfg.widths.push_back(8);
    cfg.widths.push_back(2);
    cfg.accumulation = a;
    return cfg;
}

namespace detail {
inline constexpr std::uint64_t input_stream = 1, target_stream = 2, weight_stream = 3, bias_stream = 4;
inline std::size_t sz(int n) { return static_cast<std::size_t>(n); }
} // namespace detail

/// Micro-batch `m`'s input: `samples × widths[0]`, row-major by sample, entries in [-1, 1).
[[nodiscard]] inline std::vector<double> mlp_input(const mlp_config& cfg, int m) {
    const int n = cfg.samples * cfg.widths.front();
    std::vector<double> x(detail::sz(n));
    for (int k = 0; k < n; ++k)
        x[detail::sz(k)] = uniform_pm1(cfg.seed, detail::input_stream, static_cast<std::uint64_t>(m), static_cast<std::uint64_t>(k));
    return x;
}

/// Micro-batch `m`'s target: a fixed smooth function of its input (a "teacher"), `samples × widths.back()`:
/// `y[s][j] = 0.8 sin(sum_i u[j][i] x[s][i])` with `u` drawn from the seed.
[[nodiscard]] inline std::vector<double> mlp_target(const mlp_config& cfg, int m) {
    const std::vector<double> x = mlp_input(cfg, m);
    const int in = cfg.widths.front(), out = cfg.widths.back();
    std::vector<double> y(detail::sz(cfg.samples * out));
    for (int s = 0; s < cfg.samples; ++s)
        for (int j = 0; j < out; ++j) {
            double t = 0;
            for (int i = 0; i < in; ++i)
                t += uniform_pm1(cfg.seed, detail::target_stream, static_cast<std::uint64_t>(j), static_cast<std::uint64_t>(i)) *
                     x[detail::sz(s * in + i)];
            y[detail::sz(s * out + j)] = 0.8 * std::sin(t);
        }
    return y;
}

/// One dense layer with its gradient accumulators, and the kernels both the stages and the reference
/// use (so both perform the same floating-point operations in the same order).
struct dense_layer {
    int in = 0, out = 0;
    bool linear = false;        ///< the last layer: no tanh
    std::vector<double> w, b;   ///< w row-major out × in
    std::vector<double> gw, gb; ///< accumulated gradients

    dense_layer() = default;
    dense_layer(const mlp_config& cfg, int layer)
        : in(cfg.in_of(layer)), out(cfg.out_of(layer)), linear(layer == cfg.layers() - 1),
          w(detail::sz(in * out)), b(detail::sz(out)), gw(detail::sz(in * out), 0.0), gb(detail::sz(out), 0.0) {
        const double scale = 1.0 / std::sqrt(static_cast<double>(in));
        for (int k = 0; k < in * out; ++k)
            w[detail::sz(k)] = scale * uniform_pm1(cfg.seed, detail::weight_stream, static_cast<std::uint64_t>(layer),
                                                   static_cast<std::uint64_t>(k));
        for (int k = 0; k < out; ++k)
            b[detail::sz(k)] = 0.1 * uniform_pm1(cfg.seed, detail::bias_stream, static_cast<std::uint64_t>(layer),
                                                 static_cast<std::uint64_t>(k));
    }

    /// `samples × out`: `tanh(W x + b)`, or `W x + b` for the linear layer.
    [[nodiscard]] std::vector<double> forward(const std::vector<double>& x, int samples) const {
        std::vector<double> y(detail::sz(samples * out));
        for (int s = 0; s < samples; ++s)
            for (int o = 0; o < out; ++o) {
                double z = b[detail::sz(o)];
                for (int i = 0; i < in; ++i) z += w[detail::sz(o * in + i)] * x[detail::sz(s * in + i)];
                y[detail::sz(s * out + o)] = linear ? z : std::tanh(z);
            }
        return y;
    }
    /// Gradient at the pre-activation from the gradient at the output and the output itself.
    [[nodiscard]] std::vector<double> pre_activation_grad(std::vector<double> gy, const std::vector<double>& y) const {
        if (!linear)
            for (std::size_t k = 0; k < gy.size(); ++k) gy[k] *= 1.0 - y[k] * y[k];
        return gy;
    }
    /// `Wᵀ dz` with the current weights: the gradient for the previous layer.
    [[nodiscard]] std::vector<double> input_grad(const std::vector<double>& dz, int samples) const {
        std::vector<double> dx(detail::sz(samples * in), 0.0);
        for (int s = 0; s < samples; ++s)
            for (int i = 0; i < in; ++i) {
                double t = 0;
                for (int o = 0; o < out; ++o) t += w[detail::sz(o * in + i)] * dz[detail::sz(s * out + o)];
                dx[detail::sz(s * in + i)] = t;
            }
        return dx;
    }
    /// Adds this micro-batch's weight and bias gradients (summed over its samples) to the accumulators.
    void accumulate(const std::vector<double>& dz, const std::vector<double>& x, int samples) {
        for (int o = 0; o < out; ++o) {
            for (int i = 0; i < in; ++i) {
                double t = 0;
                for (int s = 0; s < samples; ++s) t += dz[detail::sz(s * out + o)] * x[detail::sz(s * in + i)];
                gw[detail::sz(o * in + i)] += t;
            }
            double t = 0;
            for (int s = 0; s < samples; ++s) t += dz[detail::sz(s * out + o)];
            gb[detail::sz(o)] += t;
        }
    }
    /// Plain SGD, then zero the accumulators.
    void sgd(double lr) {
        for (std::size_t k = 0; k < w.size(); ++k) w[k] -= lr * gw[k];
        for (std::size_t k = 0; k < b.size(); ++k) b[k] -= lr * gb[k];
        std::fill(gw.begin(), gw.end(), 0.0);
        std::fill(gb.begin(), gb.end(), 0.0);
    }
    /// W then b.
    [[nodiscard]] std::vector<double> parameters() const {
        std::vector<double> p = w;
        p.insert(p.end(), b.begin(), b.end());
        return p;
    }
    void load(const std::vector<double>& p) {
        if (p.size() != w.size() + b.size()) throw std::logic_error("dense_layer::load: wrong parameter count");
        std::copy(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(w.size()), w.begin());
        std::copy(p.begin() + static_cast<std::ptrdiff_t>(w.size()), p.end(), b.begin());
    }
    [[nodiscard]] bool gradients_zero() const {
        const auto zero = [](double v) { return v == 0.0; };
        return std::all_of(gw.begin(), gw.end(), zero) && std::all_of(gb.begin(), gb.end(), zero);
    }
};

/// Mean squared error of `y` against `t` (over samples and outputs), and its gradient with respect
/// to `y` divided by `a`.
[[nodiscard]] inline double mse(const std::vector<double>& y, const std::vector<double>& t) {
    double sum = 0;
    for (std::size_t k = 0; k < y.size(); ++k) sum += (y[k] - t[k]) * (y[k] - t[k]);
    return sum / static_cast<double>(y.size());
}
[[nodiscard]] inline std::vector<double> mse_grad(const std::vector<double>& y, const std::vector<double>& t,
                                                   double loss_scale) {
    std::vector<double> g(y.size());
    const double k = 2.0 * loss_scale / static_cast<double>(y.size());
    for (std::size_t i = 0; i < y.size(); ++i) g[i] = k * (y[i] - t[i]);
    return g;
}

/// Whether a stage keeps its activations from forward to backward or recomputes them in `recompute(m)`.
enum class activations { keep, recompute };

/// One pipeline stage of the MLP: layer `layer` of `cfg` (the last layer also computes the loss).
class mlp_stage {
public:
    using buffer_type = std::vector<double>;

    mlp_stage(const mlp_config& cfg, int layer, activations mode = activations::keep)
        : cfg_(cfg), layer_(cfg, layer), index_(layer), first_(layer == 0), last_(layer == cfg.layers() - 1),
          mode_(mode) {}

    buffer_type forward(int m, buffer_type in) {
        if (entries_.count(m) != 0) fail("forward of micro-batch ", m, " twice");
        if (first_) {
            if (!in.empty()) fail("first stage got a non-empty input for micro-batch ", m);
            in = mlp_input(cfg_, m);
        } else if (in.size() != detail::sz(cfg_.samples * layer_.in)) {
            fail("input of micro-batch ", m, " has the wrong size");
        }
        entry e;
        e.output = layer_.forward(in, cfg_.samples);
        e.input = std::move(in);
        ++forwards_;
        buffer_type out;
        if (last_) losses_[m] = mse(e.output, mlp_target(cfg_, m));
        else out = e.output;
        if (mode_ == activations::recompute) e.output.clear();
        entries_.emplace(m, std::move(e));
        return out;
    }

    buffer_type backward_input(int m, buffer_type g) {
        entry& e = find(m);
        if (e.output.empty()) fail("backward of micro-batch ", m, " without activations (no recompute before it)");
        if (!e.dz.empty()) fail("backward of micro-batch ", m, " twice");
        if (last_) {
            if (!g.empty()) fail("last stage got a non-empty gradient for micro-batch ", m);
            g = mse_grad(e.output, mlp_target(cfg_, m), loss_scale_);
        } else if (g.size() != detail::sz(cfg_.samples * layer_.out)) {
            fail("gradient of micro-batch ", m, " has the wrong size");
        }
        e.dz = layer_.pre_activation_grad(std::move(g), e.output);
        e.output.clear(); // the activations are no longer needed
        e.output.shrink_to_fit();
        return first_ ? buffer_type{} : layer_.input_grad(e.dz, cfg_.samples);
    }

    void backward_weight(int m) {
        entry& e = find(m);
        if (e.dz.empty()) fail("weight backward of micro-batch ", m, " before its input backward");
        layer_.accumulate(e.dz, e.input, cfg_.samples);
        entries_.erase(m);
        ++backwards_;
    }

    buffer_type backward(int m, buffer_type g) {
        buffer_type dx = backward_input(m, std::move(g));
        backward_weight(m);
        return dx;
    }

    void recompute(int m) {
        entry& e = find(m);
        if (mode_ != activations::recompute) fail("recompute of micro-batch ", m, " on a stage that keeps activations");
        if (!e.output.empty() || !e.dz.empty()) fail("recompute of micro-batch ", m, " whose activations are held");
        e.output = layer_.forward(e.input, cfg_.samples);
        ++recomputes_;
    }

    void step() {
        layer_.sgd(cfg_.learning_rate);
        ++steps_;
    }

    /// The executor passes the policy's loss scale (1 / micro-batches per update) to the last stage.
    void set_loss_scale(double factor) { loss_scale_ = factor; }
    [[nodiscard]] double loss_scale() const noexcept { return loss_scale_; }

    [[nodiscard]] std::vector<double> parameters() const { return layer_.parameters(); }
    void load(const std::vector<double>& p) { layer_.load(p); }
    [[nodiscard]] bool gradients_zero() const { return layer_.gradients_zero(); }
    [[nodiscard]] const dense_layer& layer() const noexcept { return layer_; }
    /// Last stage only: the (undivided) MSE of each micro-batch, by micro-batch.
    [[nodiscard]] const std::map<int, double>& losses() const noexcept { return losses_; }
    /// Micro-batches with something stored (forward done, backward not finished).
    [[nodiscard]] std::size_t stored() const noexcept { return entries_.size(); }
    [[nodiscard]] int forwards() const noexcept { return forwards_; }
    [[nodiscard]] int backwards() const noexcept { return backwards_; }
    [[nodiscard]] int recomputes() const noexcept { return recomputes_; }
    [[nodiscard]] int steps() const noexcept { return steps_; }

private:
    struct entry {
        buffer_type input;  ///< the stage input (the first stage: the loaded micro-batch)
        buffer_type output; ///< the activations: empty when dropped (recompute mode) or used
        buffer_type dz;     ///< pre-activation gradient, between backward_input and backward_weight
    };

    template <class... T>
    [[noreturn]] void fail(const T&... parts) const {
        std::string msg = "mlp_stage " + std::to_string(index_) + ": ";
        ((msg += to_text(parts)), ...);
        throw std::logic_error(msg);
    }
    static std::string to_text(const char* s) { return s; }
    static std::string to_text(int v) { return std::to_string(v); }

    entry& find(int m) {
        auto it = entries_.find(m);
        if (it == entries_.end()) fail("backward or recompute of micro-batch ", m, " before its forward");
        return it->second;
    }

    mlp_config cfg_;
    dense_layer layer_;
    int index_;
    bool first_, last_;
    activations mode_;
    std::map<int, entry> entries_;
    std::map<int, double> losses_;
    int forwards_ = 0, backwards_ = 0, recomputes_ = 0, steps_ = 0;
    double loss_scale_ = 1.0; // until the executor sets the policy's
};

static_assert(paci::stage<mlp_stage>);
static_assert(paci::split_backward_stage<mlp_stage>);
static_assert(paci::recompute_stage<mlp_stage>);
static_assert(paci::loss_scaling_stage<mlp_stage>);

/// One stage object per layer; `last_mode` for the last stage (1F1B's recompute flavour runs the last
/// stage's forward and backward back to back, without `R`, so its last stage keeps activations).
[[nodiscard]] inline std::vector<mlp_stage> make_stages(const mlp_config& cfg, activations mode = activations::keep,
                                                        activations last_mode = activations::keep) {
    std::vector<mlp_stage> out;
    out.reserve(detail::sz(cfg.layers()));
    for (int k = 0; k < cfg.layers(); ++k) out.emplace_back(cfg, k, k == cfg.layers() - 1 ? last_mode : mode);
    return out;
}

/// Pointers to each stage, in stage order (what `paci::inprocess_pipeline` takes).
template <class S>
[[nodiscard]] std::vector<S*> pointers(std::vector<S>& stages) {
    std::vector<S*> out;
    for (auto& s : stages) out.push_back(&s);
    return out;
}

/// Every stage's parameters.
[[nodiscard]] inline std::vector<std::vector<double>> parameters(const std::vector<mlp_stage>& stages) {
    std::vector<std::vector<double>> out;
    for (const auto& s : stages) out.push_back(s.parameters());
    return out;
}

/// The unsplit model, trained sequentially: each micro-batch's forward through every layer, the loss,
/// the backward through every layer, gradients accumulated in micro-batch order, and an update of
/// every layer after every `a`-th micro-batch.
class mlp_reference {
public:
    explicit mlp_reference(const mlp_config& cfg) : cfg_(cfg) {
        for (int k = 0; k < cfg.layers(); ++k) layers_.emplace_back(cfg, k);
    }

    /// Trains on micro-batches `[first, first + n)`; returns each micro-batch's (undivided) loss.
    std::vector<double> train(int first, int n) {
        std::vector<double> losses;
        for (int m = first; m < first + n; ++m) {
            losses.push_back(train_one(m));
            if (++done_ % cfg_.accumulation == 0)
                for (auto& l : layers_) l.sgd(cfg_.learning_rate);
        }
        return losses;
    }

    /// Forward only: micro-batch `m`'s (undivided) loss with the current parameters.
    [[nodiscard]] double loss(int m) const {
        std::vector<double> x = mlp_input(cfg_, m);
        for (const auto& l : layers_) x = l.forward(x, cfg_.samples);
        return mse(x, mlp_target(cfg_, m));
    }

    /// Forward and backward of micro-batch `m`, accumulating gradients (no update); returns its loss.
    double train_one(int m) {
        std::vector<std::vector<double>> in(layers_.size()), out(layers_.size());
        std::vector<double> x = mlp_input(cfg_, m);
        for (std::size_t k = 0; k < layers_.size(); ++k) {
            out[k] = layers_[k].forward(x, cfg_.samples);
            in[k] = std::move(x);
            x = out[k];
        }
        const std::vector<double> target = mlp_target(cfg_, m);
        const double l = mse(x, target);
        std::vector<double> g = mse_grad(x, target, 1.0 / static_cast<double>(cfg_.accumulation));
        for (std::size_t k = layers_.size(); k-- > 0;) {
            const std::vector<double> dz = layers_[k].pre_activation_grad(std::move(g), out[k]);
            g = k > 0 ? layers_[k].input_grad(dz, cfg_.samples) : std::vector<double>{};
            layers_[k].accumulate(dz, in[k], cfg_.samples);
        }
        return l;
    }

    [[nodiscard]] std::vector<std::vector<double>> parameters() const {
        std::vector<std::vector<double>> out;
        for (const auto& l : layers_) out.push_back(l.parameters());
        return out;
    }
    [[nodiscard]] std::vector<dense_layer>& layers() noexcept { return layers_; }

private:
    mlp_config cfg_;
    std::vector<dense_layer> layers_;
    std::int64_t done_ = 0;
};

/// True when both hold the same doubles bit for bit (so -0.0 != 0.0 and NaNs compare by payload).
[[nodiscard]] inline bool bitwise_equal(const std::vector<double>& a, const std::vector<double>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t k = 0; k < a.size(); ++k)
        if (std::bit_cast<std::uint64_t>(a[k]) != std::bit_cast<std::uint64_t>(b[k])) return false;
    return true;
}
[[nodiscard]] inline bool bitwise_equal(const std::vector<std::vector<double>>& a,
                                        const std::vector<std::vector<double>>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t k = 0; k < a.size(); ++k)
        if (!bitwise_equal(a[k], b[k])) return false;
    return true;
}

/// Largest `|x - y| / max(|x|, |y|)` over corresponding entries (0 where both are 0); infinity when
/// the shapes differ.
[[nodiscard]] inline double max_relative_difference(const std::vector<std::vector<double>>& a,
                                                    const std::vector<std::vector<double>>& b) {
    if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
    double worst = 0;
    for (std::size_t k = 0; k < a.size(); ++k) {
        if (a[k].size() != b[k].size()) return std::numeric_limits<double>::infinity();
        for (std::size_t i = 0; i < a[k].size(); ++i) {
            const double x = a[k][i], y = b[k][i];
            const double scale = std::max(std::abs(x), std::abs(y));
            if (scale > 0) worst = std::max(worst, std::abs(x - y) / scale);
            else if (x != y) return std::numeric_limits<double>::infinity();
        }
    }
    return worst;
}

} // namespace paci_test
