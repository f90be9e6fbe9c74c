// file: examples/plug-in/main.cpp
#include <paci/paci.hpp>

#include <iostream>
#include <map>
#include <vector>

// One pipeline stage: y = w * x on the forward, the gradient flows back scaled by w, and the
// weight's gradient accumulates until step(). A real stage wraps the trainer's layers and device
// buffers; the executor only moves `buffer_type` values between stages and ranks.
struct scale_stage {
    using buffer_type = std::vector<float>;
    int index = 0, last = 0;
    float w = 1.0f, grad = 0.0f;
    float loss_scale = 1.0f;          // set by the executor on the last stage: 1 / micro-batches per update
    std::map<int, buffer_type> saved; // inputs kept for the backward, per micro-batch

    buffer_type forward(int m, buffer_type x) {
        if (index == 0) x = {static_cast<float>(m % 7) / 7.0f}; // the first stage loads micro-batch m
        saved[m] = x;
        for (float& v : x) v *= w;
        return x;                       // the last stage's output is its loss input
    }
    buffer_type backward(int m, buffer_type g) {
        buffer_type x = std::move(saved.at(m));
        saved.erase(m);
        if (index == last) g = {(x[0] * w - 0.5f) * loss_scale}; // d(loss / a)/d(output), target 0.5
        grad += g[0] * x[0];
        for (float& v : g) v *= w;
        return g;
    }
    void step() { w -= 0.1f * grad, grad = 0.0f; }      // the optimizer update
    void set_loss_scale(double f) { loss_scale = static_cast<float>(f); } // the mean gradient per update
};

int main() {
    const paci::paci_policy<> policy{.stages = 4, .microbatches = 4};
    std::vector<scale_stage> stages(4);
    std::vector<scale_stage*> ptrs;
    for (int s = 0; s < 4; ++s) {
        stages[static_cast<std::size_t>(s)].index = s;
        stages[static_cast<std::size_t>(s)].last = 3;
        ptrs.push_back(&stages[static_cast<std::size_t>(s)]);
    }

    paci::inprocess_pipeline<paci::paci_policy<>, scale_stage> pipeline(policy, ptrs);
    for (int step = 0; step < 16; ++step)  // the training loop: one update per call, no drain
        pipeline.run(policy.microbatches);
    pipeline.drain();                      // only before evaluation, a checkpoint or the end
    const paci::run_trace trace = pipeline.trace();

    // What a unit test asserts: the run was valid and stayed within PACI's drift bound.
    const paci::schedule ran = trace.to_schedule();
    const paci::replay_result versions = paci::replay(ran, policy.controller());
    const paci::drift_report drift = paci::check_drift(versions, policy);
    std::cout << paci::validate(ran) << '\n' << drift;
    return paci::validate(ran).valid() && drift.within_bounds() ? 0 : 1;
}
