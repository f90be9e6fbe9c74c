// The language model trained through paci's runtime: determinism, the loss-scaling equivalences (a
// pipelined synchronous run equals the same layers without a pipeline, bit for bit; an update
// applies the mean gradient over all its samples, which a single big batch gives independently; PACI's
// first update equals 1F1B-flush's), and the command line's bad-input errors (exit status 2).

#include "../../examples/lm/cli.hpp"
#include "../../examples/lm/model.hpp"
#include "../../examples/lm/report.hpp"

#include "support/catch.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <variant>
#include <vector>

#if PACI_LM_HAVE_EIGEN

#include "../../examples/lm/train.hpp"

#include <paci/policy/gpipe.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/policy/zero_bubble.hpp>
#include <paci/runtime/pipeline.hpp>

#include <chrono>
#include <cmath>
#include <memory>

namespace lm_training_test {

template <class T>
using model_t = std::vector<std::unique_ptr<paci_lm::lm_stage<T>>>;

/// A small model on a synthetic but irregular text: window 4 x 4 dims, 5 blocks of width 16, 8 samples.
paci_lm::lm_task task(std::uint64_t seed = 3, paci_lm::optimizer_kind opt = paci_lm::optimizer_kind::adamw, double lr = 3e-3) {
    std::string text;
    std::uint64_t z = 99;
    for (int k = 0; k < 20000; ++k) {
        z = paci_lm::mix64(z);
        text += "the quick brown fox jumps over a lazy dog\n"[z % 43];
    }
    paci_lm::lm_config c;
    c.context = 4;
    c.embed = 4;
    c.hidden = 16;
    c.blocks = 5;
    c.batch = 8;
    c.seed = seed;
    c.optimizer = opt;
    c.lr = lr;
    return {c, std::make_shared<const paci_lm::corpus>(paci_lm::corpus_from_text(text))};
}

template <class T>
std::vector<T> parameters(const model_t<T>& model) {
    std::vector<T> out;
    for (const auto& s : model) {
        const auto p = s->parameters();
        out.insert(out.end(), p.begin(), p.end());
    }
    return out;
}

/// Trains a fresh model through the in-process runtime: `updates` calls of run(a), one drain.
template <class T, class Policy>
model_t<T> train(const Policy& policy, const paci_lm::lm_task& t, int updates, bool recompute = false) {
    model_t<T> model = paci_lm::make_model<T>(t, policy.stages);
    for (auto& s : model) s->set_recompute(recompute);
    paci::inprocess_pipeline<Policy, paci_lm::lm_stage<T>> pipe(policy, paci_lm::pointers(model),
                                                                {.timeout = std::chrono::seconds(60)});
    for (int u = 0; u < updates; ++u) pipe.run(policy.microbatches);
    pipe.drain();
    return model;
}

} // namespace lm_training_test

using namespace lm_training_test;

TEST_CASE("lm: training is deterministic: the same seed gives the same bits, another seed other ones",
          "[unit][runtime]") {
    const paci::paci_policy<> policy{.stages = 4, .microbatches = 2};
    const auto a = train<float>(policy, task(3), 12);
    const auto b = train<float>(policy, task(3), 12);
    const auto c = train<float>(policy, task(4), 12);
    CHECK(parameters(a) == parameters(b));
    CHECK(a.back()->losses() == b.back()->losses());
    CHECK(parameters(a) != parameters(c));
    CHECK(a.back()->losses().size() == 24);
}

TEST_CASE("lm: every synchronous policy, pipelined, equals the same layers trained without a pipeline, bit for bit",
          "[unit][runtime]") {
    const paci_lm::lm_task t = task();
    const int a = 4, updates = 5;
    const auto reference = paci_lm::make_model<float>(t, 4);
    paci_lm::train_unpipelined(reference, 0, a * updates, a);
    const auto expected = parameters(reference);
    CHECK(parameters(train<float>(paci::one_f_one_b<>{.stages = 4, .microbatches = a}, t, updates)) == expected);
    CHECK(parameters(train<float>(paci::gpipe<>{.stages = 4, .microbatches = a}, t, updates)) == expected);
    CHECK(parameters(train<float>(paci::zb_h1{.stages = 4, .microbatches = a}, t, updates)) == expected);
    CHECK(parameters(train<float>(paci::one_f_one_b<paci::backward_flavour::recompute>{.stages = 4, .microbatches = a}, t,
                                  updates, true)) == expected);
    // The same layers split differently (P = 2 and 6) compute the same functions in the same order.
    CHECK(parameters(train<float>(paci::one_f_one_b<>{.stages = 2, .microbatches = a}, t, updates)) == expected);
    CHECK(parameters(train<float>(paci::one_f_one_b<>{.stages = 6, .microbatches = a}, t, updates)) == expected);
}

TEST_CASE("lm: an update applies the mean gradient over all its samples (loss scale 1/a), as one big batch does",
          "[unit][runtime]") {
    // SGD with lr 1: an update moves the parameters by minus the applied gradient. With a
    // micro-batches of b samples and the loss scale 1/a, that gradient is the mean over the a b
    // samples, which one micro-batch of a b samples computes on its own (samples are numbered
    // globally: micro-batch m of size b holds samples m b ... m b + b - 1).
    const int a = GENERATE(1, 2, 4, 8);
    INFO("a = " << a);
    const paci_lm::lm_task t = task(3, paci_lm::optimizer_kind::sgd, 1.0);
    paci_lm::lm_task big = t;
    big.config.batch = t.config.batch * a;
    auto whole = paci_lm::make_model<double>(big, 1);
    static_cast<void>(whole[0]->forward(0, {}));
    static_cast<void>(whole[0]->backward(0, {}));
    const std::vector<double> mean_gradient = whole[0]->gradients();
    const std::vector<double> before = parameters(paci_lm::make_model<double>(t, 4));

    const auto check = [&](const std::vector<double>& after) {
        REQUIRE(after.size() == mean_gradient.size());
        double worst = 0;
        for (std::size_t k = 0; k < after.size(); ++k)
            worst = std::max(worst, std::abs((before[k] - after[k]) - mean_gradient[k]));
        CHECK(worst < 1e-12);
    };
    const auto flush = train<double>(paci::one_f_one_b<>{.stages = 4, .microbatches = a}, t, 1);
    const auto pacim = train<double>(paci::paci_policy<>{.stages = 4, .microbatches = a}, t, 1);
    check(parameters(flush));
    check(parameters(pacim));
    // PACI's first update reads version 0 everywhere, as 1F1B-flush's: the same bits.
    CHECK(parameters(flush) == parameters(pacim));
}

TEST_CASE("lm: PACI's updates have the magnitude of 1F1B-flush's and its losses track them", "[unit][runtime]") {
    // Over 30 updates with AdamW the parameters move by about as much, and the last updates' mean
    // training loss is within 2% (PACI's gradients are at most ceil((P-1-s)/a) updates stale).
    const paci_lm::lm_task t = task(3, paci_lm::optimizer_kind::adamw, 1e-2);
    const int a = 2, updates = 30;
    const auto before = parameters(paci_lm::make_model<float>(t, 4));
    const auto flush = train<float>(paci::one_f_one_b<>{.stages = 4, .microbatches = a}, t, updates);
    const auto pacim = train<float>(paci::paci_policy<>{.stages = 4, .microbatches = a}, t, updates);
    const auto moved = [&](const std::vector<float>& after) {
        double s = 0;
        for (std::size_t k = 0; k < after.size(); ++k) s += std::pow(static_cast<double>(after[k] - before[k]), 2);
        return std::sqrt(s);
    };
    const double mf = moved(parameters(flush)), mp = moved(parameters(pacim));
    INFO("parameter change: flush " << mf << ", PACI " << mp);
    CHECK(mp / mf > 0.9);
    CHECK(mp / mf < 1.1);
    const auto mean_loss = [&](const auto& model, std::size_t from, std::size_t to) {
        const auto log = model.back()->losses();
        double s = 0;
        for (std::size_t k = from; k < to; ++k) s += log[k].second;
        return s / static_cast<double>(to - from);
    };
    const double lf = mean_loss(flush, 40, 60), lp = mean_loss(pacim, 40, 60);
    INFO("last 20 micro-batches' loss: flush " << lf << ", PACI " << lp << "; first 10: " << mean_loss(flush, 0, 10));
    CHECK(std::abs(lp - lf) / lf < 0.02);
    CHECK(lf < mean_loss(flush, 0, 10) - 0.5); // both learned something
}

TEST_CASE("lm: the recorded drift of a PACI run is within ceil((P-1-s)/a) and reaches it", "[unit][runtime]") {
    const paci::paci_policy<> policy{.stages = 4, .microbatches = 2};
    const paci_lm::lm_task t = task();
    auto model = paci_lm::make_model<float>(t, 4);
    paci::inprocess_pipeline<paci::paci_policy<>, paci_lm::lm_stage<float>> pipe(policy, paci_lm::pointers(model),
                                                                                 {.timeout = std::chrono::seconds(60)});
    for (int u = 0; u < 8; ++u) pipe.run(2);
    pipe.drain();
    paci_lm::run_record r;
    paci_lm::read_trace(policy, pipe.trace(), r);
    CHECK(r.max_drift == std::vector<int>{2, 1, 1, 0});
    CHECK(r.drift_bound == std::vector<int>{2, 1, 1, 0});
    CHECK(r.peak_activations == std::vector<int>{4, 3, 2, 1});
    CHECK(r.weight_versions == std::vector<int>{1, 1, 1, 1});
}

#endif // PACI_LM_HAVE_EIGEN

namespace lm_cli_test {

std::string error_of(const std::vector<std::string>& args, std::vector<int> stages = {4, 8}) {
    const auto parsed = paci_lm::parse(args);
    if (const auto* e = std::get_if<paci_lm::usage_error>(&parsed)) return e->message;
    const auto prepared = paci_lm::prepare(std::get<paci_lm::options>(parsed), stages);
    if (const auto* e = std::get_if<paci_lm::usage_error>(&prepared)) return e->message;
    return "";
}

struct temp_file {
    std::filesystem::path path;
    explicit temp_file(const std::string& name, const std::string& content)
        : path(std::filesystem::temp_directory_path() / name) {
        std::ofstream(path, std::ios::binary) << content;
    }
    ~temp_file() { std::filesystem::remove(path); }
};

} // namespace lm_cli_test

TEST_CASE("lm: bad input is a usage error (exit 2) whose message names it", "[unit]") {
    using lm_cli_test::error_of;
    const lm_cli_test::temp_file empty("paci-lm-empty.txt", "");
    const lm_cli_test::temp_file short_text("paci-lm-short.txt", std::string(30, 'x'));
    const lm_cli_test::temp_file ok_text("paci-lm-ok.txt", std::string(5000, 'y'));
    CHECK_THAT(error_of({"--data", "/no/such/file.txt"}),
               Catch::Matchers::ContainsSubstring("--data: '/no/such/file.txt' does not exist"));
    CHECK_THAT(error_of({"--data", empty.path.string()}), Catch::Matchers::ContainsSubstring("is empty"));
    CHECK_THAT(error_of({"--data", short_text.path.string()}), Catch::Matchers::ContainsSubstring("shorter than one micro-batch"));
    CHECK_THAT(error_of({"--data", ok_text.path.string(), "--microbatch", "5000"}),
               Catch::Matchers::ContainsSubstring("shorter than one micro-batch"));
    CHECK_THAT(error_of({"--data", ok_text.path.string(), "--stages", "9"}, {9}),
               Catch::Matchers::ContainsSubstring("--stages: 9 is larger than the model's layers (8"));
    CHECK_THAT(error_of({"--policies", "paci:4,pipedream:4"}),
               Catch::Matchers::ContainsSubstring("--policies: unknown policy 'pipedream'"));
    CHECK_THAT(error_of({"--policies", "paci"}), Catch::Matchers::ContainsSubstring("needs its micro-batches per update"));
    CHECK_THAT(error_of({"--policies", "paci:0"}), Catch::Matchers::ContainsSubstring("must be an integer in [1, 4096]"));
    CHECK_THAT(error_of({"--stagez", "4"}), Catch::Matchers::ContainsSubstring("unknown flag '--stagez'"));
    CHECK_THAT(error_of({"--samples"}), Catch::Matchers::ContainsSubstring("--samples: missing value"));
    CHECK_THAT(error_of({"--target", "-1"}), Catch::Matchers::ContainsSubstring("--target: '-1' must be a positive number"));
    CHECK(error_of({"--data", ok_text.path.string()}).empty());
}

TEST_CASE("lm: a run record survives the line format; training.json has the keys the issue names", "[unit]") {
    paci_lm::run_record r;
    r.policy = "PACI a=2";
    r.kind = "paci";
    r.stages = 2;
    r.a = 2;
    r.batch = 32;
    r.transport = "mpi";
    r.samples = 1024;
    r.final_heldout = 2.25;
    r.target = 2.5;
    r.time_to_target = 1.5;
    r.updates_to_target = 12;
    r.samples_per_s = 1000.5;
    r.max_drift = {1, 0};
    r.drift_bound = {1, 0};
    r.peak_activations = {2, 1};
    r.weight_versions = {1, 1};
    r.predicted_ratio = 1.4;
    r.measured_ratio = 1.35;
    r.curve = {{0, 4.5, std::nan(""), 0}, {1024, 2.25, 2.3, 1.5}};
    const paci_lm::run_record back = paci_lm::from_line(paci_lm::to_line(r));
    CHECK(back.policy == r.policy);
    CHECK(back.time_to_target == r.time_to_target);
    CHECK(!back.modelled_time_to_target);
    CHECK(back.max_drift == r.max_drift);
    CHECK(back.curve.size() == 2);
    CHECK(back.curve[1].heldout == 2.25);
    CHECK(back.measured_ratio == 1.35);
    const std::string json = paci_lm::to_json({r});
    for (const char* key : {"\"policy\": \"PACI a=2\"", "\"stages\": 2", "\"microbatches_per_update\": 2", "\"transport\": \"mpi\"",
                            "\"samples\": 1024", "\"final_heldout_loss\": 2.25", "\"target_loss\": 2.5", "\"time_to_target_s\": 1.5",
                            "\"modelled_time_to_target\": null", "\"samples_per_s\": 1000.5", "\"max_drift\": [1,0]",
                            "\"drift_bound\": [1,0]"})
        CHECK_THAT(json, Catch::Matchers::ContainsSubstring(key));
}
