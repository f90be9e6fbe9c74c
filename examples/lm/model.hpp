#pragma once
/// \file
/// A character-level language model on real text, as paci stages (Eigen for the matrix work).
///
/// - Text: bytes mapped to 96 tokens (newline, the 95 printable ASCII characters; a tab is a space,
///   other bytes are dropped). The corpus is cut into chunks (8 KiB, or 1% of a shorter text, at
///   least 64 characters); every 10th chunk is held out.
/// - Model: a deep MLP language model over a window of `context` characters. Each character of the
///   window is embedded (`embed` dims) and the embeddings are concatenated; then `blocks` hidden
///   blocks `y = relu(W x + b) (+ x when the widths agree: a residual)`, `hidden` wide; then the head,
///   `logits = W x + b` over the vocabulary, with softmax cross-entropy against the next character.
///   The layers that are split over stages are the blocks and the head (`layers() = blocks + 1`); the
///   embedding goes with the first block. Stage `s` of `P` holds layers `[s n / P, (s + 1) n / P)`.
/// - The loss of a micro-batch is the mean over its `batch` samples; the last stage starts its
///   backward from it times the loss scale the executor gives it (`policy.loss_scale()`, 1 / micro-
///   batches per update), so an update applies the mean gradient over every sample of the update.
/// - Sample `k` (micro-batch `m` holds samples `m b ... m b + b - 1`) is the window ending at a
///   position of the training text drawn from (seed, k) by splitmix64: every run with the same seed
///   sees the same samples, whatever its micro-batch size. Parameters are drawn from the seed too.
/// - Optimizer: AdamW (or plain SGD, for tests), on each stage's own counter.
/// - `lm_stage` satisfies `paci::stage`, `split_backward_stage` (ZB-H1: `backward_input` then
///   `backward_weight`), `recompute_stage` and `loss_scaling_stage`. A full backward is
///   `backward_input` followed by `backward_weight`, so every synchronous policy performs the same
///   floating-point operations in the same order. It is strict: a second forward of a micro-batch,
///   a backward without activations, a buffer of the wrong size each throw `std::logic_error`.
/// - Thread safety: the executor calls a stage from one thread; the loss log is behind a mutex, so a
///   training loop may read it while the ranks run.

#include <paci/runtime/stage.hpp>

// Eigen through its CMake target (Eigen3::Eigen), else where Debian puts it (/usr/include/eigen3), else
// not at all: then only the text handling is here. -DPACI_LM_HAVE_EIGEN=0 forces the latter.
#ifndef PACI_LM_HAVE_EIGEN
#if __has_include(<Eigen/Dense>)
#include <Eigen/Dense>
#define PACI_LM_HAVE_EIGEN 1
#elif __has_include(<eigen3/Eigen/Dense>)
#include <eigen3/Eigen/Dense>
#define PACI_LM_HAVE_EIGEN 1
#else
#define PACI_LM_HAVE_EIGEN 0
#endif
#endif

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace paci_lm {

// ---------------------------------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------------------------------

inline constexpr int vocab = 96;

/// Token of a byte: newline 0, ' ' .. '~' 1 .. 95, a tab is a space; -1 for anything else (dropped).
[[nodiscard]] constexpr int token_of(unsigned char c) noexcept {
    if (c == '\n') return 0;
    if (c == '\t') return 1;
    if (c >= 32 && c <= 126) return c - 31;
    return -1;
}
[[nodiscard]] constexpr char char_of(int t) noexcept { return t == 0 ? '\n' : static_cast<char>(t + 31); }

/// The text as tokens, split into a training part and a held-out part (every 10th 8 KiB chunk).
struct corpus {
    std::vector<std::uint8_t> train;
    std::vector<std::uint8_t> heldout;
    std::size_t bytes = 0; ///< bytes read
};

[[nodiscard]] inline corpus corpus_from_text(std::string_view text) {
    corpus c;
    c.bytes = text.size();
    std::vector<std::uint8_t> all;
    all.reserve(text.size());
    for (const char ch : text)
        if (const int t = token_of(static_cast<unsigned char>(ch)); t >= 0) all.push_back(static_cast<std::uint8_t>(t));
    // 8 KiB chunks, smaller for a short text so that it still has a held-out part.
    const std::size_t chunk = std::clamp<std::size_t>(all.size() / 100, 64, 8192);
    for (std::size_t k = 0; k < all.size(); ++k) ((k / chunk) % 10 == 9 ? c.heldout : c.train).push_back(all[k]);
    return c;
}

/// Reads a file whole. \throws std::runtime_error naming the file when it cannot be read.
[[nodiscard]] inline std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + p.string());
    std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) throw std::runtime_error("cannot read " + p.string());
    return s;
}

/// The text files of the Debian `fortunes` package (every regular file without an extension in
/// `dir`, sorted by name), concatenated.
[[nodiscard]] inline std::string read_fortunes(const std::filesystem::path& dir = "/usr/share/games/fortunes") {
    std::vector<std::filesystem::path> files;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec))
        if (e.is_regular_file() && !e.is_symlink() && !e.path().has_extension()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    std::string all;
    for (const auto& f : files) all += read_file(f);
    return all;
}

// ---------------------------------------------------------------------------------------------------
// Configuration and deterministic draws
// ---------------------------------------------------------------------------------------------------

enum class optimizer_kind { adamw, sgd };

struct lm_config {
    int context = 8;    ///< characters in the window
    int embed = 16;     ///< embedding dims per character
    int hidden = 128;   ///< width of the hidden blocks
    int blocks = 7;     ///< hidden blocks (the first maps context * embed -> hidden)
    int batch = 32;     ///< samples per micro-batch
    optimizer_kind optimizer = optimizer_kind::adamw;
    double lr = 3e-3;
    double beta1 = 0.9, beta2 = 0.99, eps = 1e-8, weight_decay = 0.0;
    std::uint64_t seed = 1;

    /// Layers split over stages: the blocks and the head.
    [[nodiscard]] int layers() const noexcept { return blocks + 1; }
    /// First layer of stage `s` of `P` (stage s holds [first(s), first(s + 1))).
    [[nodiscard]] int first_layer(int s, int P) const noexcept { return s * layers() / P; }
};

[[nodiscard]] constexpr std::uint64_t mix64(std::uint64_t z) noexcept {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
/// A number in [-1, 1) from a seed and two indices.
[[nodiscard]] inline double uniform_pm1(std::uint64_t seed, std::uint64_t a, std::uint64_t b) noexcept {
    const std::uint64_t z = mix64(mix64(mix64(seed) ^ a) ^ b);
    return static_cast<double>(z >> 11) * 0x1.0p-52 - 1.0;
}

/// Where training sample `k` ends (the index of the predicted character) in a text of `n` tokens.
[[nodiscard]] inline std::size_t sample_end(std::uint64_t seed, std::int64_t k, std::size_t n, int context) {
    const std::uint64_t range = n - static_cast<std::size_t>(context);
    return static_cast<std::size_t>(context) + mix64(mix64(seed ^ 0x5eedULL) ^ static_cast<std::uint64_t>(k)) % range;
}

/// `count` held-out sample ends, evenly spaced over the held-out text.
[[nodiscard]] inline std::vector<std::size_t> heldout_ends(const corpus& c, int context, int count) {
    std::vector<std::size_t> out;
    const std::size_t n = c.heldout.size();
    if (n <= static_cast<std::size_t>(context)) return out;
    const std::size_t span = n - static_cast<std::size_t>(context);
    for (int i = 0; i < count; ++i)
        out.push_back(static_cast<std::size_t>(context) + static_cast<std::size_t>(i) * span / static_cast<std::size_t>(count));
    return out;
}

#if PACI_LM_HAVE_EIGEN

// ---------------------------------------------------------------------------------------------------
// Parameters with their gradient and optimizer state
// ---------------------------------------------------------------------------------------------------

template <class T>
using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
template <class T>
using vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;

template <class T>
struct param {
    matrix<T> w, gw, mw, vw; // value, accumulated gradient, Adam moments
    vector<T> b, gb, mb, vb;

    param() = default;
    param(int rows, int cols, double scale, std::uint64_t seed, std::uint64_t stream)
        : w(rows, cols), gw(matrix<T>::Zero(rows, cols)), mw(matrix<T>::Zero(rows, cols)), vw(matrix<T>::Zero(rows, cols)),
          b(vector<T>::Zero(rows)), gb(vector<T>::Zero(rows)), mb(vector<T>::Zero(rows)), vb(vector<T>::Zero(rows)) {
        for (Eigen::Index k = 0; k < w.size(); ++k)
            w.data()[k] = static_cast<T>(scale * uniform_pm1(seed, stream, static_cast<std::uint64_t>(k)));
    }

    void update(const lm_config& cfg, int t) {
        if (cfg.optimizer == optimizer_kind::sgd) {
            w -= static_cast<T>(cfg.lr) * gw;
            b -= static_cast<T>(cfg.lr) * gb;
        } else {
            const T b1 = static_cast<T>(cfg.beta1), b2 = static_cast<T>(cfg.beta2);
            const T c1 = static_cast<T>(1 / (1 - std::pow(cfg.beta1, t)));
            const T c2 = static_cast<T>(1 / (1 - std::pow(cfg.beta2, t)));
            const T lr = static_cast<T>(cfg.lr), eps = static_cast<T>(cfg.eps), wd = static_cast<T>(cfg.weight_decay);
            adam(w, gw, mw, vw, b1, b2, c1, c2, lr, eps, wd);
            adam(b, gb, mb, vb, b1, b2, c1, c2, lr, eps, T(0));
        }
        gw.setZero();
        gb.setZero();
    }

    template <class M>
    static void adam(M& p, const M& g, M& m, M& v, T b1, T b2, T c1, T c2, T lr, T eps, T wd) {
        m.array() = b1 * m.array() + (1 - b1) * g.array();
        v.array() = b2 * v.array() + (1 - b2) * g.array().square();
        p.array() -= lr * ((m.array() * c1) / ((v.array() * c2).sqrt() + eps) + wd * p.array());
    }
};

// ---------------------------------------------------------------------------------------------------
// The stage
// ---------------------------------------------------------------------------------------------------

/// What every stage of one model shares (read only): the configuration and the text.
struct lm_task {
    lm_config config;
    std::shared_ptr<const corpus> text;
};

template <class T>
class lm_stage {
public:
    using buffer_type = std::vector<T>;
    using mat = matrix<T>;
    using vec = vector<T>;

    /// Stage `index` of `count` of the model `task` describes.
    lm_stage(lm_task task, int index, int count) : task_(std::move(task)), index_(index), count_(count) {
        const lm_config& c = task_.config;
        if (!(count >= 1 && count <= c.layers()))
            throw std::invalid_argument("paci_lm::lm_stage: stages (" + std::to_string(count) + ") must be in [1, " +
                                        std::to_string(c.layers()) + "], the model's layers");
        if (!(index >= 0 && index < count))
            throw std::invalid_argument("paci_lm::lm_stage: index (" + std::to_string(index) + ") must be in [0, " +
                                        std::to_string(count) + ")");
        first_ = c.first_layer(index, count);
        end_ = c.first_layer(index + 1, count);
        if (index == 0)
            embedding_ = param<T>(c.embed, vocab, 1.0, c.seed, 1000);
        for (int l = first_; l < end_; ++l) {
            if (l < c.blocks) {
                const int in = l == 0 ? c.context * c.embed : c.hidden;
                const bool residual = in == c.hidden;
                // He-uniform, halved on residual branches so the residual sum's variance grows slowly.
                const double scale = std::sqrt(6.0 / in) * (residual ? 0.5 : 1.0);
                blocks_.push_back({param<T>(c.hidden, in, scale, c.seed, 2000 + static_cast<std::uint64_t>(l)), residual});
            } else {
                head_ = param<T>(vocab, c.hidden, std::sqrt(3.0 / c.hidden) * 0.5, c.seed, 3000);
                has_head_ = true;
            }
        }
    }
    lm_stage(const lm_stage&) = delete;
    lm_stage& operator=(const lm_stage&) = delete;

    [[nodiscard]] int index() const noexcept { return index_; }
    [[nodiscard]] int in_dim() const noexcept { return index_ == 0 ? 0 : first_ == 0 ? task_.config.context * task_.config.embed : task_.config.hidden; }
    [[nodiscard]] int out_dim() const noexcept { return has_head_ ? 0 : task_.config.hidden; }
    [[nodiscard]] bool is_last() const noexcept { return has_head_; }

    /// Keep only the stage's input in the forward and rebuild the activations in `recompute(m)`
    /// (the recompute flavour; the last stage always keeps them: its backward follows its forward).
    void set_recompute(bool on) noexcept { recompute_mode_ = on && !has_head_; }
    void set_loss_scale(double f) noexcept { loss_scale_ = f; }
    [[nodiscard]] double loss_scale() const noexcept { return loss_scale_; }

    // ---- the stage interface --------------------------------------------------------------------

    buffer_type forward(int m, buffer_type in) {
        if (saved_.count(m)) throw std::logic_error("lm_stage: second forward of micro-batch " + std::to_string(m));
        if (index_ != 0) check_size(in, in_dim(), "forward input");
        saved& s = saved_[m];
        if (index_ == 0) s.tokens = batch_tokens(m, s.targets);
        else s.input = Eigen::Map<const mat>(in.data(), in_dim(), task_.config.batch);
        if (has_head_ && index_ != 0) s.targets = batch_targets(m);
        mat out = run(s, true);
        if (has_head_) {
            log_loss(m, last_loss_);
            return {};
        }
        if (recompute_mode_) s.drop_activations();
        return to_buffer(out);
    }

    void recompute(int m) {
        saved& s = find(m, "recompute");
        if (s.has_acts) throw std::logic_error("lm_stage: recompute of micro-batch " + std::to_string(m) + " whose activations are held");
        static_cast<void>(run(s, true));
    }

    buffer_type backward(int m, buffer_type g) {
        buffer_type out = backward_input(m, std::move(g));
        backward_weight(m);
        return out;
    }

    buffer_type backward_input(int m, buffer_type g) {
        saved& s = find(m, "backward");
        if (!s.has_acts) throw std::logic_error("lm_stage: backward of micro-batch " + std::to_string(m) + " without its activations");
        const int B = task_.config.batch;
        mat G;
        if (has_head_) {
            // d(mean CE * scale)/d logits = (softmax - onehot) * scale / B
            s.gz_head = s.probs;
            for (int j = 0; j < B; ++j) s.gz_head(s.targets[static_cast<std::size_t>(j)], j) -= T(1);
            s.gz_head *= static_cast<T>(loss_scale_ / B);
            G.noalias() = head_.w.transpose() * s.gz_head;
        } else {
            check_size(g, out_dim(), "backward gradient");
            G = Eigen::Map<const mat>(g.data(), out_dim(), B);
        }
        s.gz.resize(blocks_.size());
        for (std::size_t k = blocks_.size(); k-- > 0;) {
            s.gz[k] = (s.z[k].array() > T(0)).select(G, T(0));
            if (blocks_[k].residual) G.noalias() += blocks_[k].p.w.transpose() * s.gz[k];
            else G.noalias() = blocks_[k].p.w.transpose() * s.gz[k];
        }
        s.has_input_grad = true;
        if (index_ == 0) {
            s.gx = std::move(G);
            return {};
        }
        return to_buffer(G);
    }

    void backward_weight(int m) {
        saved& s = find(m, "backward_weight");
        if (!s.has_input_grad) throw std::logic_error("lm_stage: backward_weight of micro-batch " + std::to_string(m) + " before backward_input");
        if (has_head_) {
            head_.gw.noalias() += s.gz_head * s.x_head.transpose();
            head_.gb += s.gz_head.rowwise().sum();
        }
        for (std::size_t k = 0; k < blocks_.size(); ++k) {
            blocks_[k].p.gw.noalias() += s.gz[k] * s.x[k].transpose();
            blocks_[k].p.gb += s.gz[k].rowwise().sum();
        }
        if (index_ == 0) {
            const int C = task_.config.context, E = task_.config.embed, B = task_.config.batch;
            for (int j = 0; j < B; ++j)
                for (int c = 0; c < C; ++c)
                    embedding_.gw.col(s.tokens[static_cast<std::size_t>(j * C + c)]) += s.gx.block(c * E, j, E, 1);
        }
        saved_.erase(m);
    }

    void step() {
        ++updates_;
        if (index_ == 0) {
            embedding_.gb.setZero(); // the embedding has no bias
            embedding_.update(task_.config, updates_);
        }
        for (auto& b : blocks_) b.p.update(task_.config, updates_);
        if (has_head_) head_.update(task_.config, updates_);
    }

    // ---- evaluation (no state kept) -------------------------------------------------------------

    /// Stage 0: the concatenated embeddings of the windows ending at `ends` in `text`.
    [[nodiscard]] mat embed_windows(const std::vector<std::uint8_t>& text, std::span<const std::size_t> ends) const {
        const auto C = static_cast<std::size_t>(task_.config.context);
        std::vector<int> tokens(ends.size() * C);
        for (std::size_t j = 0; j < ends.size(); ++j)
            for (std::size_t c = 0; c < C; ++c) tokens[j * C + c] = text[ends[j] - C + c];
        return embed(tokens, static_cast<int>(ends.size()));
    }
    /// This stage's blocks applied to `x`.
    [[nodiscard]] mat infer_layers(const mat& x) const {
        mat h = x;
        for (const auto& b : blocks_) h = block_forward(b, h, nullptr);
        return h;
    }
    /// The last stage: the summed cross-entropy of the head applied to `h` against the characters
    /// at `ends`.
    [[nodiscard]] double head_loss_sum(const mat& h, const std::vector<std::uint8_t>& text, std::span<const std::size_t> ends) const {
        mat logits = head_.w * h;
        logits.colwise() += head_.b;
        double sum = 0;
        for (Eigen::Index j = 0; j < logits.cols(); ++j) {
            const T mx = logits.col(j).maxCoeff();
            const double lse = static_cast<double>(mx) + std::log(static_cast<double>((logits.col(j).array() - mx).exp().sum()));
            sum += lse - static_cast<double>(logits(text[ends[static_cast<std::size_t>(j)]], j));
        }
        return sum;
    }

    // ---- inspection -----------------------------------------------------------------------------

    /// Every parameter, flattened (embedding, blocks, head).
    [[nodiscard]] std::vector<T> parameters() const {
        std::vector<T> out;
        const auto add = [&](const auto& m) { out.insert(out.end(), m.data(), m.data() + m.size()); };
        if (index_ == 0) add(embedding_.w);
        for (const auto& b : blocks_) add(b.p.w), add(b.p.b);
        if (has_head_) add(head_.w), add(head_.b);
        return out;
    }
    /// Every accumulated gradient, flattened in the order of `parameters()`.
    [[nodiscard]] std::vector<T> gradients() const {
        std::vector<T> out;
        const auto add = [&](const auto& m) { out.insert(out.end(), m.data(), m.data() + m.size()); };
        if (index_ == 0) add(embedding_.gw);
        for (const auto& b : blocks_) add(b.p.gw), add(b.p.gb);
        if (has_head_) add(head_.gw), add(head_.gb);
        return out;
    }
    /// Pointers to every parameter, in the order of `parameters()` (for finite differences).
    [[nodiscard]] std::vector<T*> parameter_pointers() {
        std::vector<T*> out;
        const auto add = [&](auto& m) { for (Eigen::Index k = 0; k < m.size(); ++k) out.push_back(m.data() + k); };
        if (index_ == 0) add(embedding_.w);
        for (auto& b : blocks_) add(b.p.w), add(b.p.b);
        if (has_head_) add(head_.w), add(head_.b);
        return out;
    }
    [[nodiscard]] std::size_t stored() const noexcept { return saved_.size(); }
    [[nodiscard]] int updates() const noexcept { return updates_; }

    /// (micro-batch, loss) of every forward of the last stage so far, in the order they ran.
    [[nodiscard]] std::vector<std::pair<int, double>> losses() const {
        std::lock_guard lock(log_mutex_);
        return losses_;
    }
    /// Loss of the last forward (the last stage; tests).
    [[nodiscard]] double last_loss() const noexcept { return last_loss_; }

private:
    struct block {
        param<T> p;
        bool residual = false;
    };
    struct saved {
        std::vector<int> tokens, targets; // stage 0 window tokens (C per sample); last stage targets
        mat input;                        // stage > 0: the stage input
        std::vector<mat> x, z;            // per block: input and pre-activation
        mat x_head, probs;                // head input and softmax
        std::vector<mat> gz;              // per block: d loss / d pre-activation (split backward)
        mat gz_head, gx;                  // head logits gradient; stage 0: gradient of the embeddings
        bool has_acts = false, has_input_grad = false;
        void drop_activations() {
            x.clear(), z.clear();
            x_head.resize(0, 0), probs.resize(0, 0);
            has_acts = false;
        }
    };

    void check_size(const buffer_type& b, int rows, const char* what) const {
        const auto want = static_cast<std::size_t>(rows) * static_cast<std::size_t>(task_.config.batch);
        if (b.size() != want)
            throw std::logic_error(std::string("lm_stage: ") + what + " has " + std::to_string(b.size()) + " values, expected " +
                                   std::to_string(want));
    }
    static buffer_type to_buffer(const mat& m) { return buffer_type(m.data(), m.data() + m.size()); }

    saved& find(int m, const char* what) {
        auto it = saved_.find(m);
        if (it == saved_.end()) throw std::logic_error(std::string("lm_stage: ") + what + " of micro-batch " + std::to_string(m) + " without its forward");
        return it->second;
    }

    /// Stage 0: window tokens of micro-batch m (C per sample); `targets` gets the next characters.
    std::vector<int> batch_tokens(int m, std::vector<int>& targets) const {
        const lm_config& c = task_.config;
        const auto& text = task_.text->train;
        std::vector<int> tokens(static_cast<std::size_t>(c.batch * c.context));
        targets.assign(static_cast<std::size_t>(c.batch), 0);
        for (int j = 0; j < c.batch; ++j) {
            const std::size_t end = sample_end(c.seed, static_cast<std::int64_t>(m) * c.batch + j, text.size(), c.context);
            for (int k = 0; k < c.context; ++k)
                tokens[static_cast<std::size_t>(j * c.context + k)] = text[end - static_cast<std::size_t>(c.context) + static_cast<std::size_t>(k)];
            targets[static_cast<std::size_t>(j)] = text[end];
        }
        return tokens;
    }
    std::vector<int> batch_targets(int m) const {
        std::vector<int> t;
        static_cast<void>(batch_tokens(m, t));
        return t;
    }

    mat embed(const std::vector<int>& tokens, int B) const {
        const int C = task_.config.context, E = task_.config.embed;
        mat x(C * E, B);
        for (int j = 0; j < B; ++j)
            for (int c = 0; c < C; ++c) x.block(c * E, j, E, 1) = embedding_.w.col(tokens[static_cast<std::size_t>(j * C + c)]);
        return x;
    }

    static mat block_forward(const block& b, const mat& x, mat* z_out) {
        mat z = b.p.w * x;
        z.colwise() += b.p.b;
        mat y = z.cwiseMax(T(0));
        if (b.residual) y += x;
        if (z_out) *z_out = std::move(z);
        return y;
    }

    /// The forward of this stage's layers from `s`'s input, keeping the activations in `s`.
    mat run(saved& s, bool keep) {
        mat h = index_ == 0 ? embed(s.tokens, task_.config.batch) : s.input;
        s.x.resize(blocks_.size());
        s.z.resize(blocks_.size());
        for (std::size_t k = 0; k < blocks_.size(); ++k) {
            mat y = block_forward(blocks_[k], h, &s.z[k]);
            s.x[k] = std::move(h);
            h = std::move(y);
        }
        s.has_acts = keep;
        if (!has_head_) return h;
        mat logits = head_.w * h;
        logits.colwise() += head_.b;
        s.probs.resize(logits.rows(), logits.cols());
        double sum = 0;
        for (Eigen::Index j = 0; j < logits.cols(); ++j) {
            const T mx = logits.col(j).maxCoeff();
            s.probs.col(j) = (logits.col(j).array() - mx).exp();
            const T total = s.probs.col(j).sum();
            s.probs.col(j) /= total;
            sum += static_cast<double>(mx) + std::log(static_cast<double>(total)) -
                   static_cast<double>(logits(s.targets[static_cast<std::size_t>(j)], j));
        }
        s.x_head = std::move(h);
        last_loss_ = sum / static_cast<double>(logits.cols());
        return {};
    }

    void log_loss(int m, double loss) {
        std::lock_guard lock(log_mutex_);
        losses_.emplace_back(m, loss);
    }

    lm_task task_;
    int index_ = 0, count_ = 1, first_ = 0, end_ = 0;
    param<T> embedding_;
    std::vector<block> blocks_;
    param<T> head_;
    bool has_head_ = false;
    bool recompute_mode_ = false;
    double loss_scale_ = 1.0;
    int updates_ = 0;
    double last_loss_ = 0;
    std::map<int, saved> saved_;
    mutable std::mutex log_mutex_;
    std::vector<std::pair<int, double>> losses_;
};

static_assert(paci::stage<lm_stage<float>>);
static_assert(paci::split_backward_stage<lm_stage<float>>);
static_assert(paci::recompute_stage<lm_stage<float>>);
static_assert(paci::loss_scaling_stage<lm_stage<float>>);

/// The P stages of one model.
template <class T>
[[nodiscard]] std::vector<std::unique_ptr<lm_stage<T>>> make_model(const lm_task& task, int P) {
    std::vector<std::unique_ptr<lm_stage<T>>> out;
    for (int s = 0; s < P; ++s) out.push_back(std::make_unique<lm_stage<T>>(task, s, P));
    return out;
}
template <class T>
[[nodiscard]] std::vector<lm_stage<T>*> pointers(const std::vector<std::unique_ptr<lm_stage<T>>>& model) {
    std::vector<lm_stage<T>*> out;
    for (const auto& s : model) out.push_back(s.get());
    return out;
}

/// Mean held-out cross-entropy (nats per character) of the model, over `ends`, in chunks.
template <class T>
[[nodiscard]] double heldout_loss(const std::vector<std::unique_ptr<lm_stage<T>>>& model, const corpus& text,
                                  const std::vector<std::size_t>& ends, std::size_t chunk = 512) {
    double sum = 0;
    for (std::size_t from = 0; from < ends.size(); from += chunk) {
        const std::span<const std::size_t> part(ends.data() + from, std::min(chunk, ends.size() - from));
        matrix<T> h = model.front()->embed_windows(text.heldout, part);
        for (const auto& s : model) h = s->infer_layers(h);
        sum += model.back()->head_loss_sum(h, text.heldout, part);
    }
    return sum / static_cast<double>(ends.size());
}

/// The same layers without a pipeline: micro-batches one after another (forward through every stage,
/// backward back), an update of every stage after each `a` micro-batches, the loss scaled by 1/a.
template <class T>
void train_unpipelined(const std::vector<std::unique_ptr<lm_stage<T>>>& model, int first_microbatch, int microbatches, int a) {
    for (auto& s : model) s->set_loss_scale(1.0 / a);
    for (int m = first_microbatch; m < first_microbatch + microbatches; ++m) {
        std::vector<T> x;
        for (auto& s : model) x = s->forward(m, std::move(x));
        std::vector<T> g;
        for (std::size_t k = model.size(); k-- > 0;) g = model[k]->backward(m, std::move(g));
        if ((m - first_microbatch + 1) % a == 0)
            for (auto& s : model) s->step();
    }
}

#endif // PACI_LM_HAVE_EIGEN

} // namespace paci_lm
