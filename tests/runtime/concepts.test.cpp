// Concept conformance for the runtime (runtime/stage.hpp, runtime/communicator.hpp): the reference
// models satisfy `stage`, `split_backward_stage`, `recompute_stage` and `communicator_for`; near misses,
// each one requirement short, do not. Everything is decided at compile time; the test cases restate
// it as STATIC_REQUIREs so the results show in the test report.

#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/zero_bubble.hpp>
#include <paci/runtime/communicator.hpp>
#include <paci/runtime/executor.hpp>
#include <paci/runtime/inprocess.hpp>
#include <paci/runtime/stage.hpp>

#include "support/catch.hpp"
#include "support/mlp.hpp"

#include <chrono>
#include <utility>
#include <vector>

namespace {

using fvec = std::vector<float>;

// ---- stages -------------------------------------------------------------------------------------

/// The minimal valid model from stage.hpp's documentation.
struct minimal_stage {
    using buffer_type = fvec;
    buffer_type forward(int, buffer_type in);
    buffer_type backward(int, buffer_type g);
    void step();
};

/// A full model: split backward and recompute as well.
struct full_stage : minimal_stage {
    buffer_type backward_input(int, buffer_type g);
    void backward_weight(int);
    void recompute(int);
};

struct no_buffer_type {
    fvec forward(int, fvec);
    fvec backward(int, fvec);
    void step();
};

struct no_backward {
    using buffer_type = fvec;
    buffer_type forward(int, buffer_type);
    void step();
};

/// The near miss stage.hpp names: a backward with nothing to start from.
struct backward_without_gradient {
    using buffer_type = fvec;
    buffer_type forward(int, buffer_type);
    buffer_type backward(int);
    void step();
};

struct backward_returns_void {
    using buffer_type = fvec;
    buffer_type forward(int, buffer_type);
    void backward(int, buffer_type);
    void step();
};

struct forward_returns_other_type {
    using buffer_type = fvec;
    std::vector<double> forward(int, buffer_type);
    buffer_type backward(int, buffer_type);
    void step();
};

struct no_step {
    using buffer_type = fvec;
    buffer_type forward(int, buffer_type);
    buffer_type backward(int, buffer_type);
};

/// A buffer the executor could not move between actions.
struct pinned_buffer {
    pinned_buffer() = default;
    pinned_buffer(const pinned_buffer&) = delete;
    pinned_buffer(pinned_buffer&&) = delete;
    pinned_buffer& operator=(const pinned_buffer&) = delete;
    pinned_buffer& operator=(pinned_buffer&&) = delete;
};
struct stage_with_pinned_buffer {
    using buffer_type = pinned_buffer;
    buffer_type forward(int, buffer_type&&);
    buffer_type backward(int, buffer_type&&);
    void step();
};

/// A buffer without a default (the executor hands the first stage an empty one).
struct no_default_buffer {
    explicit no_default_buffer(int);
};
struct stage_with_no_default_buffer {
    using buffer_type = no_default_buffer;
    buffer_type forward(int, buffer_type);
    buffer_type backward(int, buffer_type);
    void step();
};

struct split_without_weight : minimal_stage {
    buffer_type backward_input(int, buffer_type);
};
struct split_without_input : minimal_stage {
    void backward_weight(int);
};
struct split_input_returns_void : minimal_stage {
    void backward_input(int, buffer_type);
    void backward_weight(int);
};
/// `recompute` with nothing to say which micro-batch.
struct recompute_without_microbatch : minimal_stage {
    void recompute();
};

/// The overlapped-pair hook: the forward's stage runs `other`'s backward with its own forward.
struct overlapping : minimal_stage {
    std::pair<buffer_type, buffer_type> forward_backward(int, buffer_type, overlapping&, int, buffer_type);
};
/// The near miss stage.hpp names: no backward stage to run the pair's backward on.
struct overlap_without_other_stage : minimal_stage {
    std::pair<buffer_type, buffer_type> forward_backward(int, buffer_type, int, buffer_type);
};
/// The hook returning only the forward's output (the backward's gradient would be lost).
struct overlap_returns_one_buffer : minimal_stage {
    buffer_type forward_backward(int, buffer_type, overlap_returns_one_buffer&, int, buffer_type);
};

// ---- communicators ------------------------------------------------------------------------------

struct good_send {
    bool test();
    void wait(std::chrono::nanoseconds);
};
struct good_recv {
    bool test();
    fvec wait(std::chrono::nanoseconds);
};
/// A send request that cannot say whether it completed.
struct send_without_test {
    void wait(std::chrono::nanoseconds);
};
struct recv_wrong_buffer {
    bool test();
    std::vector<double> wait(std::chrono::nanoseconds);
};
struct recv_without_wait {
    bool test();
};

struct good_comm {
    int rank() const;
    int size() const;
    good_send isend(int, int, fvec);
    good_recv irecv(int, int);
};
/// The near miss communicator.hpp names: nothing to tell when the buffer may be released.
struct isend_returns_void {
    int rank() const;
    int size() const;
    void isend(int, int, fvec);
    good_recv irecv(int, int);
};
struct isend_request_without_test {
    int rank() const;
    int size() const;
    send_without_test isend(int, int, fvec);
    good_recv irecv(int, int);
};
struct irecv_wrong_buffer {
    int rank() const;
    int size() const;
    good_send isend(int, int, fvec);
    recv_wrong_buffer irecv(int, int);
};
struct no_irecv {
    int rank() const;
    int size() const;
    good_send isend(int, int, fvec);
};
/// `rank()` callable only on a non-const communicator.
struct mutable_rank {
    int rank();
    int size() const;
    good_send isend(int, int, fvec);
    good_recv irecv(int, int);
};

template <class P, class S, class C>
concept executor_builds = requires { typename paci::executor<P, S, C>; };

} // namespace

TEST_CASE("stage: reference models satisfy it, near misses do not", "[unit][runtime]") {
    STATIC_REQUIRE(paci::stage<minimal_stage>);
    STATIC_REQUIRE(paci::stage<full_stage>);
    STATIC_REQUIRE(paci::stage<paci_test::mlp_stage>);

    STATIC_REQUIRE_FALSE(paci::stage<no_buffer_type>);
    STATIC_REQUIRE_FALSE(paci::stage<no_backward>);
    STATIC_REQUIRE_FALSE(paci::stage<backward_without_gradient>);
    STATIC_REQUIRE_FALSE(paci::stage<backward_returns_void>);
    STATIC_REQUIRE_FALSE(paci::stage<forward_returns_other_type>);
    STATIC_REQUIRE_FALSE(paci::stage<no_step>);
    STATIC_REQUIRE_FALSE(paci::stage<stage_with_pinned_buffer>);
    STATIC_REQUIRE_FALSE(paci::stage<stage_with_no_default_buffer>);
    STATIC_REQUIRE_FALSE(paci::stage<int>);
}

TEST_CASE("split_backward_stage and recompute_stage: reference models satisfy them, near misses do not",
          "[unit][runtime]") {
    STATIC_REQUIRE(paci::split_backward_stage<full_stage>);
    STATIC_REQUIRE(paci::split_backward_stage<paci_test::mlp_stage>);
    STATIC_REQUIRE(paci::recompute_stage<full_stage>);
    STATIC_REQUIRE(paci::recompute_stage<paci_test::mlp_stage>);

    STATIC_REQUIRE_FALSE(paci::split_backward_stage<minimal_stage>);
    STATIC_REQUIRE_FALSE(paci::split_backward_stage<split_without_weight>);
    STATIC_REQUIRE_FALSE(paci::split_backward_stage<split_without_input>);
    STATIC_REQUIRE_FALSE(paci::split_backward_stage<split_input_returns_void>);
    STATIC_REQUIRE_FALSE(paci::recompute_stage<minimal_stage>);
    STATIC_REQUIRE_FALSE(paci::recompute_stage<recompute_without_microbatch>);
    // The refinements need a stage first.
    struct only_split {
        using buffer_type = fvec;
        buffer_type backward_input(int, buffer_type);
        void backward_weight(int);
        void recompute(int);
    };
    STATIC_REQUIRE_FALSE(paci::split_backward_stage<only_split>);
    STATIC_REQUIRE_FALSE(paci::recompute_stage<only_split>);
}

TEST_CASE("overlapping_stage: a stage with forward_backward(mf, x, other, mb, g) satisfies it, near misses do not",
          "[unit][runtime]") {
    STATIC_REQUIRE(paci::overlapping_stage<overlapping>);
    STATIC_REQUIRE_FALSE(paci::overlapping_stage<minimal_stage>);
    STATIC_REQUIRE_FALSE(paci::overlapping_stage<paci_test::mlp_stage>);
    STATIC_REQUIRE_FALSE(paci::overlapping_stage<overlap_without_other_stage>);
    STATIC_REQUIRE_FALSE(paci::overlapping_stage<overlap_returns_one_buffer>);
    STATIC_REQUIRE(executor_builds<paci::one_f_one_b<>, overlapping, good_comm>);
}

TEST_CASE("communicator_for: the in-process transport satisfies it, near misses do not", "[unit][runtime]") {
    using inproc = paci::inprocess_communicator<fvec>;
    STATIC_REQUIRE(paci::communicator_for<inproc, fvec>);
    STATIC_REQUIRE(paci::communicator_for<paci::inprocess_communicator<std::vector<double>>, std::vector<double>>);
    STATIC_REQUIRE(paci::send_request<inproc::send_request>);
    STATIC_REQUIRE(paci::recv_request_for<inproc::recv_request, fvec>);
    STATIC_REQUIRE(paci::abortable<inproc>);
    STATIC_REQUIRE(paci::communicator_for<good_comm, fvec>);

    // A transport for another buffer type.
    STATIC_REQUIRE_FALSE(paci::communicator_for<inproc, std::vector<double>>);
    STATIC_REQUIRE_FALSE(paci::communicator_for<isend_returns_void, fvec>);
    STATIC_REQUIRE_FALSE(paci::send_request<send_without_test>);
    STATIC_REQUIRE_FALSE(paci::communicator_for<isend_request_without_test, fvec>);
    STATIC_REQUIRE_FALSE(paci::recv_request_for<recv_wrong_buffer, fvec>);
    STATIC_REQUIRE_FALSE(paci::recv_request_for<recv_without_wait, fvec>);
    STATIC_REQUIRE_FALSE(paci::communicator_for<irecv_wrong_buffer, fvec>);
    STATIC_REQUIRE_FALSE(paci::communicator_for<no_irecv, fvec>);
    STATIC_REQUIRE_FALSE(paci::communicator_for<mutable_rank, fvec>);
    STATIC_REQUIRE_FALSE(paci::abortable<good_comm>);
}

TEST_CASE("executor: builds for matching stage and communicator types only", "[unit][runtime]") {
    using mlp = paci_test::mlp_stage; // buffer_type std::vector<double>
    STATIC_REQUIRE(executor_builds<paci::one_f_one_b<>, mlp, paci::inprocess_communicator<std::vector<double>>>);
    STATIC_REQUIRE(executor_builds<paci::zb_h1, mlp, paci::inprocess_communicator<std::vector<double>>>);
    STATIC_REQUIRE(executor_builds<paci::one_f_one_b<>, minimal_stage, good_comm>);
    // The communicator carries another buffer type than the stage's.
    STATIC_REQUIRE_FALSE(executor_builds<paci::one_f_one_b<>, mlp, paci::inprocess_communicator<fvec>>);
    STATIC_REQUIRE_FALSE(executor_builds<paci::one_f_one_b<>, no_backward, good_comm>);
    STATIC_REQUIRE_FALSE(executor_builds<paci::one_f_one_b<>, minimal_stage, isend_returns_void>);
}
