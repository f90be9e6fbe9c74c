// The training demonstration's language model (examples/lm/model.hpp): every layer's gradient
// against central finite differences of the loss computed by the evaluation path (double precision),
// and the text handling.

#include "../../examples/lm/model.hpp"

#include "support/catch.hpp"

#if PACI_LM_HAVE_EIGEN

#include <cmath>
#include <memory>
#include <string>
#include <vector>

namespace lm_model_test {

using paci_lm::lm_stage;

/// A small model on a synthetic text: window 3 x 4 dims = 12 inputs, two blocks of width 6 (the
/// first a plain dense layer, 12 -> 6, the second residual), the head; 5 samples per micro-batch.
paci_lm::lm_task small_task(int blocks = 2) {
    std::string text;
    for (int k = 0; k < 4000; ++k) text += static_cast<char>('a' + (k * 7 + k / 13) % 26), text += (k % 9 == 0 ? " " : "");
    paci_lm::lm_config c;
    c.context = 3;
    c.embed = 4;
    c.hidden = 6;
    c.blocks = blocks;
    c.batch = 5;
    c.seed = 11;
    return {c, std::make_shared<const paci_lm::corpus>(paci_lm::corpus_from_text(text))};
}

/// The sample ends of micro-batch m (as the stages draw them).
std::vector<std::size_t> ends_of(const paci_lm::lm_task& t, int m) {
    std::vector<std::size_t> e;
    for (int j = 0; j < t.config.batch; ++j)
        e.push_back(paci_lm::sample_end(t.config.seed, static_cast<std::int64_t>(m) * t.config.batch + j, t.text->train.size(),
                                        t.config.context));
    return e;
}

/// Mean loss of micro-batch m through the evaluation path of all stages of `model`.
double eval_loss(const std::vector<std::unique_ptr<lm_stage<double>>>& model, const paci_lm::lm_task& t, int m) {
    const auto ends = ends_of(t, m);
    paci_lm::matrix<double> h = model.front()->embed_windows(t.text->train, ends);
    for (const auto& s : model) h = s->infer_layers(h);
    return model.back()->head_loss_sum(h, t.text->train, ends) / t.config.batch;
}

/// Runs forward and backward of micro-batch m through every stage (loss scale 1).
void forward_backward(const std::vector<std::unique_ptr<lm_stage<double>>>& model, int m) {
    std::vector<double> x;
    for (const auto& s : model) x = s->forward(m, std::move(x));
    std::vector<double> g;
    for (std::size_t k = model.size(); k-- > 0;) g = model[k]->backward(m, std::move(g));
}

double rel_error(double a, double b) { return std::abs(a - b) / std::max(1e-7, std::abs(a) + std::abs(b)); }

} // namespace lm_model_test

using namespace lm_model_test;

TEST_CASE("lm: the gradient of every parameter (embedding, dense, residual, head) matches finite differences",
          "[unit]") {
    const int P = GENERATE(1, 2, 3);
    INFO("stages " << P);
    const paci_lm::lm_task t = small_task();
    auto model = paci_lm::make_model<double>(t, P);
    const int m = 3;
    forward_backward(model, m);
    // The loss the forward logged equals the evaluation path's.
    CHECK(std::abs(model.back()->last_loss() - eval_loss(model, t, m)) < 1e-12);
    std::size_t checked = 0;
    for (const auto& stage : model) {
        const std::vector<double> grad = stage->gradients();
        std::vector<double*> params = stage->parameter_pointers();
        REQUIRE(grad.size() == params.size());
        for (std::size_t k = 0; k < params.size(); k += 1 + k % 3) { // a spread of entries of every tensor
            double* p = params[k];
            const double keep = *p, h = 1e-6;
            *p = keep + h;
            const double up = eval_loss(model, t, m);
            *p = keep - h;
            const double down = eval_loss(model, t, m);
            *p = keep;
            const double fd = (up - down) / (2 * h);
            INFO("stage " << stage->index() << " parameter " << k << ": analytic " << grad[k] << ", finite difference " << fd);
            // Embedding columns of characters absent from the batch have gradient 0 exactly, both ways.
            if (std::abs(fd) < 1e-9) CHECK(std::abs(grad[k]) < 1e-9);
            else CHECK(rel_error(grad[k], fd) < 1e-6);
            ++checked;
        }
    }
    CHECK(checked > 200);
}

TEST_CASE("lm: the gradient a stage sends upstream matches finite differences of its input", "[unit]") {
    const paci_lm::lm_task t = small_task(3); // stage 1 of 2: a residual block and the head
    auto model = paci_lm::make_model<double>(t, 2);
    const int m = 5;
    std::vector<double> x = model[0]->forward(m, {});
    const std::vector<double> x0 = x;
    static_cast<void>(model[1]->forward(m, std::move(x)));
    const std::vector<double> gx = model[1]->backward(m, {});
    REQUIRE(gx.size() == x0.size());
    const auto ends = ends_of(t, m);
    const auto loss_at = [&](const std::vector<double>& in) {
        const paci_lm::matrix<double> h = Eigen::Map<const paci_lm::matrix<double>>(in.data(), t.config.hidden, t.config.batch);
        return model[1]->head_loss_sum(model[1]->infer_layers(h), t.text->train, ends) / t.config.batch;
    };
    for (std::size_t k = 0; k < x0.size(); ++k) {
        std::vector<double> up = x0, down = x0;
        up[k] += 1e-6, down[k] -= 1e-6;
        const double fd = (loss_at(up) - loss_at(down)) / 2e-6;
        INFO("input " << k << ": analytic " << gx[k] << ", finite difference " << fd);
        CHECK(rel_error(gx[k], fd) < 1e-6);
    }
}

TEST_CASE("lm: the loss scale multiplies every gradient; the split backward equals the full one", "[unit]") {
    const paci_lm::lm_task t = small_task();
    auto full = paci_lm::make_model<double>(t, 1);
    auto scaled = paci_lm::make_model<double>(t, 1);
    auto split = paci_lm::make_model<double>(t, 1);
    scaled[0]->set_loss_scale(0.25);
    forward_backward(full, 0);
    forward_backward(scaled, 0);
    static_cast<void>(split[0]->forward(0, {}));
    CHECK(split[0]->backward_input(0, {}).empty());
    CHECK(split[0]->gradients() == std::vector<double>(split[0]->gradients().size(), 0.0)); // W not yet run
    split[0]->backward_weight(0);
    const auto g = full[0]->gradients(), gs = scaled[0]->gradients();
    for (std::size_t k = 0; k < g.size(); ++k) CHECK(std::abs(gs[k] - 0.25 * g[k]) < 1e-15);
    CHECK(split[0]->gradients() == g);
    CHECK(split[0]->stored() == 0);
}

TEST_CASE("lm: the stage is strict about the order of its calls and the size of its buffers", "[unit]") {
    const paci_lm::lm_task t = small_task();
    auto model = paci_lm::make_model<double>(t, 2);
    CHECK_THROWS_AS(model[1]->forward(0, std::vector<double>(7)), std::logic_error);
    static_cast<void>(model[0]->forward(0, {}));
    CHECK_THROWS_AS(model[0]->forward(0, {}), std::logic_error);                              // second forward
    CHECK_THROWS_AS(model[0]->backward(1, std::vector<double>(30)), std::logic_error);        // no forward
    CHECK_THROWS_AS(model[0]->backward(0, std::vector<double>(29)), std::logic_error);        // wrong size
    model[0]->set_recompute(true);
    static_cast<void>(model[0]->forward(2, {}));
    CHECK_THROWS_AS(model[0]->backward(2, std::vector<double>(30)), std::logic_error); // activations dropped
    model[0]->recompute(2);
    CHECK(model[0]->backward(2, std::vector<double>(30, 0.0)).empty());
    CHECK_THROWS_AS((lm_stage<double>(t, 0, t.config.layers() + 1)), std::invalid_argument);
}

TEST_CASE("lm: recompute rebuilds exactly the activations the forward had", "[unit]") {
    const paci_lm::lm_task t = small_task(4);
    auto keep = paci_lm::make_model<double>(t, 2);
    auto redo = paci_lm::make_model<double>(t, 2);
    for (auto& s : redo) s->set_recompute(true);
    for (int m = 0; m < 3; ++m) {
        std::vector<double> a = keep[0]->forward(m, {}), b = redo[0]->forward(m, {});
        CHECK(a == b);
        static_cast<void>(keep[1]->forward(m, std::move(a)));
        static_cast<void>(redo[1]->forward(m, std::move(b)));
        redo[0]->recompute(m);
        const auto ga = keep[1]->backward(m, {}), gb = redo[1]->backward(m, {});
        CHECK(ga == gb);
        CHECK(keep[0]->backward(m, ga).empty());
        CHECK(redo[0]->backward(m, gb).empty());
    }
    CHECK(keep[0]->gradients() == redo[0]->gradients());
}

#else

TEST_CASE("lm: Eigen not found, the language model's tests are skipped", "[unit]") {
    WARN("examples/lm needs Eigen (libeigen3-dev): its tests did not run");
}

#endif

TEST_CASE("lm: text is mapped to 96 tokens and split into training and held-out parts", "[unit]") {
    CHECK(paci_lm::token_of('\n') == 0);
    CHECK(paci_lm::token_of(' ') == 1);
    CHECK(paci_lm::token_of('\t') == 1);
    CHECK(paci_lm::token_of('~') == 95);
    CHECK(paci_lm::token_of(0xC3) == -1);
    for (int t = 0; t < paci_lm::vocab; ++t)
        if (t != 1) CHECK(paci_lm::token_of(static_cast<unsigned char>(paci_lm::char_of(t))) == t);
    // 100 000 usable characters: chunks of 1000, every 10th held out.
    const paci_lm::corpus c = paci_lm::corpus_from_text(std::string(100000, 'x') + "\xC3\xA9");
    CHECK(c.bytes == 100002);
    CHECK(c.train.size() == 90000);
    CHECK(c.heldout.size() == 10000);
}
