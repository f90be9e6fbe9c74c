// A zero-bubble policy needs a stage with a split backward: the executor must refuse, at compile
// time, a Stage that only has backward(m, g).
// paci-expect-error: needs a Stage with backward_input
#include <paci/policy/zero_bubble.hpp>
#include <paci/runtime/inprocess.hpp>
#include <paci/runtime/pipeline.hpp>

#include <vector>

struct plain_stage {
    using buffer_type = std::vector<float>;
    buffer_type forward(int, buffer_type b) { return b; }
    buffer_type backward(int, buffer_type g) { return g; }
#ifdef PACI_COMPILE_FAIL_CONTROL
    buffer_type backward_input(int, buffer_type g) { return g; }
    void backward_weight(int) {}
#endif
    void step() {}
};

int main() {
    std::vector<plain_stage> stages(2);
    std::vector<plain_stage*> p{&stages[0], &stages[1]};
    paci::inprocess_pipeline pipeline(paci::zb_h1{.stages = 2, .microbatches = 2}, p);
    pipeline.run(2);
}
