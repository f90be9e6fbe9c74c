// paci-cuda: users' CUDA layers under paci. A stage whose layers are real CUDA work (cuBLAS SGEMMs,
// a tanh kernel of its own and its gradient, the loss on the last stage, SGD on the device; see
// stage.hpp) trains a small regression task with PACI and 1F1B-flush, the way a training loop
// does it: `run(a)` once per update, `drain()` at the end.
//
//   1. One GPU, in process: every stage a thread with its own CUDA stream; buffers handed over by
//      the in-process communicator, ordered by their events on the streams (no host copies).
//   2. One process per GPU over paci::nccl_communicator (every GPU present, up to 8; with fewer
//      than 2 GPUs this layout is skipped and says so). The example starts the processes itself
//      (it runs itself again with --nccl-rank), and rank 0 hands the NCCL id over in a file.
//
// Checks (each printed "ok" or "FAIL"):
//   - 1F1B-flush's parameters equal a single-stream, unpipelined run of the same layers within
//     float tolerance (and it says whether they are bitwise equal);
//   - PACI: the weight versions each forward and backward read, as recorded, equal the replay of
//     the policy (paci::replay), and the drift stays within ceil((P - 1 - s) / a);
//   - no host synchronisation in the steady state: the example's own synchronisations go through
//     a counting wrapper (none may happen between warm-up and drain), and a gate kernel that holds
//     every stage's stream shows that the host issues two whole updates without waiting for the
//     device (a cudaFree, cudaStreamSynchronize or blocking allocation anywhere in the stages or
//     the transport would stop it);
//   - the loss goes down.
// Timing (printed, not checked): the executor's host time per action with empty kernels against a
// bare loop of the same launches, and PACI against 1F1B-flush in samples/s for 4 stages on one GPU
// (the stages' streams overlap on one device, so this measures the schedules' overlap, not a
// multi-GPU speed-up).
//
// Exit status: 0 every check passed; 1 a check failed or an error; 77 no CUDA device
// (cudaGetDeviceCount fails or finds none): prints "skipped: no CUDA device" and runs nothing
// (CTest reports it as skipped through SKIP_RETURN_CODE 77).
//
// Usage: paci-cuda [--quick]

#include <paci/analysis/replay.hpp>
#include <paci/analysis/validate.hpp>
#include <paci/nccl/communicator.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/runtime/executor.hpp>
#include <paci/runtime/inprocess.hpp>
#include <paci/runtime/pipeline.hpp>

#include "kernels.hpp"
#include "stage.hpp"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

extern char** environ;

namespace {

constexpr int exit_skipped = 77;

// --- the example's host synchronisations, counted ----------------------------------------------

std::atomic<long> host_syncs{0};
void sync_stream(cudaStream_t s) {
    ++host_syncs;
    cuex::cuda_ok(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}
void sync_device() {
    ++host_syncs;
    cuex::cuda_ok(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}

struct outcome {
    bool ok = true;
    std::string prefix;
    void require(bool condition, const std::string& what) {
        std::cout << prefix << "    " << (condition ? "ok   " : "FAIL ") << what << "\n" << std::flush;
        ok = ok && condition;
    }
};

struct settings {
    int stages = 4;
    int accumulation = 8; // a: micro-batches per update
    int updates = 24;
    cuex::stage_config stage{};
};

settings check_settings(bool quick) {
    settings s;
    s.updates = quick ? 12 : 24;
    s.stage.width = 128;
    s.stage.batch = 32;
    s.stage.layers = 2;
    s.stage.learning_rate = 0.02f;
    return s;
}

cuex::stage_config stage_at(const settings& s, int index) {
    cuex::stage_config c = s.stage;
    c.index = index;
    c.stages = s.stages;
    return c;
}

/// A model: one stage object per stage on the current device, and the loss of every micro-batch.
struct model {
    cuex::device_floats losses;
    std::vector<std::unique_ptr<cuex::cuda_stage>> stages;
    model(const settings& s, int microbatches) : losses(static_cast<std::size_t>(microbatches)) {
        for (int k = 0; k < s.stages; ++k)
            stages.push_back(std::make_unique<cuex::cuda_stage>(stage_at(s, k), k + 1 == s.stages ? losses.data : nullptr));
        for (auto& st : stages) sync_stream(st->stream()); // the initialization, before any run
    }
    [[nodiscard]] std::vector<cuex::cuda_stage*> pointers() const {
        std::vector<cuex::cuda_stage*> out;
        for (const auto& st : stages) out.push_back(st.get());
        return out;
    }
    [[nodiscard]] std::size_t allocations() const {
        std::size_t n = 0;
        for (const auto& st : stages) n += st->allocations();
        return n;
    }
};

std::vector<float> to_host(const cuex::device_floats& d) {
    std::vector<float> h(d.size);
    cuex::cuda_ok(cudaMemcpy(h.data(), d.data, d.size * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
    return h;
}

double mean(const std::vector<float>& v, int from, int count) {
    double sum = 0;
    for (int i = from; i < from + count; ++i) sum += v[static_cast<std::size_t>(i)];
    return sum / count;
}

/// The same layers without a pipeline: each micro-batch forward through every stage and back, in
/// order, on one thread; an update every `a` micro-batches.
void train_unpipelined(model& ref, const settings& s, int microbatches) {
    ref.stages.back()->set_loss_scale(1.0 / s.accumulation);
    for (int m = 0; m < microbatches; ++m) {
        paci::device_buffer x;
        for (auto& st : ref.stages) x = st->forward(m, std::move(x));
        paci::device_buffer g;
        for (auto it = ref.stages.rbegin(); it != ref.stages.rend(); ++it) g = (*it)->backward(m, std::move(g));
        if ((m + 1) % s.accumulation == 0)
            for (auto& st : ref.stages) st->step();
    }
    sync_device();
}

/// Compares parameters: true within `rel` (relative to 1 + |reference|); counts bitwise-equal values.
bool compare(const std::vector<float>& got, const std::vector<float>& want, double rel, std::size_t& bitwise,
             double& worst) {
    if (got.size() != want.size()) return false;
    bool ok = true;
    for (std::size_t i = 0; i < got.size(); ++i) {
        const double d = std::abs(static_cast<double>(got[i]) - static_cast<double>(want[i]));
        worst = std::max(worst, d / (1.0 + std::abs(static_cast<double>(want[i]))));
        ok = ok && d <= rel * (1.0 + std::abs(static_cast<double>(want[i])));
        bitwise += std::memcmp(&got[i], &want[i], sizeof(float)) == 0 ? 1U : 0U;
    }
    return ok;
}

/// PACI's recorded versions against the replay of the policy, and the drift bound. `events`: the
/// recorded events (of every rank, or of one rank over NCCL).
template <class Policy>
void check_versions(const Policy& policy, int updates, const std::vector<paci::trace_event>& events, int expected,
                    outcome& result) {
    Policy window = policy;
    window.steps = updates;
    const paci::replay_result predicted = paci::replay(window.generate(), policy.controller());
    int checked = 0, equal = 0;
    for (const auto& e : events) {
        if (e.act.kind != paci::op::F && e.act.kind != paci::op::B) continue;
        const auto& rec = predicted.at(e.act.stage, e.act.microbatch);
        ++checked;
        equal += e.version == (e.act.kind == paci::op::F ? rec.forward : rec.backward) ? 1 : 0;
    }
    result.require(checked == equal && checked == expected,
                   "recorded weight versions equal the replay's for all " + std::to_string(checked) + " of " +
                       std::to_string(expected) + " forwards and backwards");
}

template <class Policy>
void check_drift(const Policy& policy, const paci::schedule& ran, outcome& result) {
    const paci::replay_result recorded = paci::replay(ran, policy.controller());
    std::ostringstream line;
    line << "recorded max drift per stage (bound ceil((P-1-s)/a)):";
    bool within = true;
    for (int st = 0; st < policy.stages; ++st) {
        const int observed = recorded.per_stage[static_cast<std::size_t>(st)].max_drift;
        const int bound = policy.drift_bound(st);
        line << ' ' << observed << " (" << bound << ')';
        within = within && observed <= bound;
    }
    result.require(within, line.str());
}

// --- 1. one GPU, in process -------------------------------------------------------------------

template <class Policy>
void train_inprocess(const Policy& policy, const char* title, const settings& s, outcome& result) {
    const int microbatches = s.accumulation * s.updates;
    model m(s, microbatches);
    std::cout << title << ": " << policy << ", " << s.updates << " updates of " << s.accumulation
              << " micro-batches, width " << s.stage.width << ", " << s.stage.layers << " layers per stage\n";
    {
        paci::inprocess_pipeline<Policy, cuex::cuda_stage> pipe(policy, m.pointers());
        for (int u = 0; u < s.updates; ++u) pipe.run(s.accumulation);
        pipe.drain();
        sync_device();
        const std::vector<float> losses = to_host(m.losses);
        const int q = std::min(4, s.updates / 2) * s.accumulation;
        std::printf("    loss: first updates %.5f, last updates %.5f\n", mean(losses, 0, q), mean(losses, microbatches - q, q));
        result.require(mean(losses, microbatches - q, q) < mean(losses, 0, q), "the loss goes down");
        const paci::run_trace trace = pipe.trace();
        const paci::schedule ran = trace.to_schedule();
        result.require(paci::validate(ran).valid(), "the recorded run is a valid schedule");
        if constexpr (std::is_same_v<Policy, paci::paci_policy<>>) {
            std::vector<paci::trace_event> all;
            for (const auto& r : trace.ranks) all.insert(all.end(), r.begin(), r.end());
            check_versions(policy, s.updates, all, 2 * s.stages * microbatches, result);
            check_drift(policy, ran, result);
        }
    }
    if constexpr (std::is_same_v<Policy, paci::one_f_one_b<>>) {
        model ref(s, microbatches);
        train_unpipelined(ref, s, microbatches);
        std::size_t bitwise = 0, total = 0;
        double worst = 0;
        bool ok = true;
        for (int k = 0; k < s.stages; ++k) {
            const auto got = to_host(m.stages[static_cast<std::size_t>(k)]->parameters());
            const auto want = to_host(ref.stages[static_cast<std::size_t>(k)]->parameters());
            ok = compare(got, want, 1e-5, bitwise, worst) && ok;
            total += got.size();
        }
        char buf[200];
        std::snprintf(buf, sizeof buf, "parameters equal the unpipelined run of the same layers (max rel. diff %.3g; %zu of %zu bitwise)",
                      worst, bitwise, total);
        result.require(ok, buf);
    }
}

/// No host synchronisation in the steady state: after a warm-up, a gate kernel holds every
/// stage's stream while the host issues two more updates; they must be issued without waiting for
/// the device (a watchdog opens the gate after 10 s if the host got stuck).
void check_no_host_sync(const settings& s, outcome& result) {
    const paci::paci_policy<> policy{.stages = s.stages, .microbatches = s.accumulation};
    const int warm = 3, gated = 3;
    model m(s, s.accumulation * (warm + gated + 1));
    int* flag_host = nullptr;
    cuex::cuda_ok(cudaHostAlloc(reinterpret_cast<void**>(&flag_host), sizeof(int), cudaHostAllocMapped), "cudaHostAlloc");
    int* flag_device = nullptr;
    cuex::cuda_ok(cudaHostGetDevicePointer(reinterpret_cast<void**>(&flag_device), flag_host, 0), "cudaHostGetDevicePointer");
    volatile int* flag = flag_host;
    *flag = 0;
    bool stuck = false;
    long syncs = 0;
    std::size_t allocated = 0;
    {
        paci::inprocess_pipeline<paci::paci_policy<>, cuex::cuda_stage> pipe(policy, m.pointers());
        for (int u = 0; u < warm; ++u) pipe.run(s.accumulation);
        const long syncs_before = host_syncs.load();
        const std::size_t alloc_before = m.allocations();
        for (auto& st : m.stages) cuex::launch_gate(flag_device, st->stream());
        std::mutex mu;
        std::condition_variable cv;
        bool issued = false;
        std::thread watchdog([&] {
            std::unique_lock lock(mu);
            if (!cv.wait_for(lock, std::chrono::seconds(10), [&] { return issued; })) stuck = true;
            *flag = 1;
        });
        for (int u = 0; u < gated; ++u) pipe.run(s.accumulation);
        {
            std::lock_guard lock(mu);
            issued = true;
        }
        cv.notify_all();
        watchdog.join();
        pipe.drain(); // the stages may be read again only now
        syncs = host_syncs.load() - syncs_before;
        allocated = m.allocations() - alloc_before;
    }
    sync_device();
    cuex::cuda_ok(cudaFreeHost(flag_host), "cudaFreeHost");
    result.require(!stuck, "with every stream held by a gate kernel, the host issued " + std::to_string(gated) +
                               " updates without waiting for the device (no host synchronisation in steady state)");
    result.require(syncs == 0, "the example's counted cudaStreamSynchronize/cudaDeviceSynchronize calls from warm-up to drain: " +
                                   std::to_string(syncs));
    result.require(allocated == 0, "device allocations by the stages from warm-up to drain: " + std::to_string(allocated));
}

/// Host time per action: the executor (one rank, one stage of empty kernels, on this thread)
/// against a bare loop that makes the same launches on one stream.
void time_overhead(bool quick) {
    const int a = 8, updates = quick ? 500 : 4000;
    cuex::stage_config c;
    c.empty = true;
    c.stages = 1;
    cuex::cuda_stage st(c, nullptr);
    const paci::one_f_one_b<> policy{.stages = 1, .microbatches = a};
    paci::inprocess_world<paci::device_buffer> world(1);
    auto comm = world.communicator(0);
    paci::executor_options opts;
    opts.record = false;
    paci::executor<paci::one_f_one_b<>, cuex::cuda_stage, paci::inprocess_communicator<paci::device_buffer>> exec(
        policy, {&st}, comm, opts);
    exec.run(a); // warm-up
    exec.drain();
    sync_stream(st.stream());
    const long actions = static_cast<long>(updates) * (2 * a + 1);
    using clk = std::chrono::steady_clock;
    auto t0 = clk::now();
    for (int u = 0; u < updates; ++u) exec.run(a);
    exec.drain();
    const double exec_issue = std::chrono::duration<double>(clk::now() - t0).count();
    sync_stream(st.stream());
    const double exec_total = std::chrono::duration<double>(clk::now() - t0).count();
    t0 = clk::now();
    for (long k = 0; k < actions; ++k) cuex::launch_empty(st.stream());
    const double bare_issue = std::chrono::duration<double>(clk::now() - t0).count();
    sync_stream(st.stream());
    const double bare_total = std::chrono::duration<double>(clk::now() - t0).count();
    const double us = 1e6 / static_cast<double>(actions);
    std::printf("timing: executor overhead, 1 stage of empty kernels, %ld actions (1F1B, a=%d):\n", actions, a);
    std::printf("    host time per action: executor %.3f us, bare stream-ordered loop %.3f us: overhead %.3f us\n",
                exec_issue * us, bare_issue * us, (exec_issue - bare_issue) * us);
    std::printf("    until the device finished: executor %.3f us, bare loop %.3f us per action\n", exec_total * us,
                bare_total * us);
}

/// Samples per second of PACI and 1F1B-flush, 4 stages on one GPU (one stream each).
template <class Policy>
double samples_per_second(const Policy& policy, settings s, int updates) {
    const int warm = 2;
    model m(s, s.accumulation * (warm + updates));
    paci::executor_options opts;
    opts.record = false;
    paci::inprocess_pipeline<Policy, cuex::cuda_stage> pipe(policy, m.pointers(), opts);
    for (int u = 0; u < warm; ++u) pipe.run(s.accumulation);
    pipe.drain();
    sync_device();
    const auto t0 = std::chrono::steady_clock::now();
    for (int u = 0; u < updates; ++u) pipe.run(s.accumulation);
    pipe.drain();
    sync_device();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return static_cast<double>(updates) * s.accumulation * s.stage.batch / seconds;
}

void time_throughput(bool quick) {
    settings s;
    s.stage.width = 1024;
    s.stage.batch = 256;
    s.stage.layers = 2;
    const int updates = quick ? 5 : 20;
    const double flush = samples_per_second(paci::one_f_one_b<>{.stages = 4, .microbatches = s.accumulation}, s, updates);
    const double ours = samples_per_second(paci::paci_policy<>{.stages = 4, .microbatches = s.accumulation}, s, updates);
    std::printf("timing: 4 stages on one GPU (streams overlap on one device), width %d, batch %d, %d layers per stage, a=%d, %d updates:\n",
                s.stage.width, s.stage.batch, s.stage.layers, s.accumulation, updates);
    std::printf("    1F1B-flush %.0f samples/s, PACI %.0f samples/s (PACI / 1F1B-flush = %.3f)\n", flush, ours, ours / flush);
}

// --- 2. one process per GPU over NCCL ---------------------------------------------------------

std::string arg_after(int argc, char** argv, const char* name) {
    for (int i = 1; i + 1 < argc; ++i)
        if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
    return {};
}

/// One rank of the NCCL layout: stage `rank` of `world` on GPU `rank`.
int nccl_rank(int rank, int world, const std::string& id_file, bool quick) {
    outcome result;
    result.prefix = "[rank " + std::to_string(rank) + "]";
    try {
        cuex::cuda_ok(cudaSetDevice(rank), "cudaSetDevice");
        ncclUniqueId id;
        if (rank == 0) {
            paci::detail::nccl_check(ncclGetUniqueId(&id), nullptr, "cuda example", "ncclGetUniqueId");
            const std::string tmp = id_file + ".tmp";
            std::ofstream(tmp, std::ios::binary).write(reinterpret_cast<const char*>(&id), sizeof id);
            if (std::rename(tmp.c_str(), id_file.c_str()) != 0) throw std::runtime_error("paci::cuda example: rename of the id file failed");
        } else {
            const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
            for (;;) {
                std::ifstream in(id_file, std::ios::binary);
                if (in && in.read(reinterpret_cast<char*>(&id), sizeof id)) break;
                if (std::chrono::steady_clock::now() > deadline)
                    throw std::runtime_error("paci::cuda example: the NCCL id file (" + id_file + ") did not appear within 60 s");
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
            }
        }
        settings s = check_settings(quick);
        s.stages = world;
        const int microbatches = s.accumulation * s.updates;
        cuex::device_floats losses(static_cast<std::size_t>(microbatches));
        cuex::cuda_stage stage(stage_at(s, rank), rank + 1 == world ? losses.data : nullptr);
        const std::size_t bytes = stage.message_bytes();
        paci::nccl_communicator comm(id, rank, world, stage.stream(), [bytes](int, int) { return bytes; });
        std::cout << result.prefix << " GPU " << rank << ", " << comm.channels() << " NCCL channels\n" << std::flush;

        // 1F1B-flush against the unpipelined run of all stages' layers on this GPU.
        {
            const paci::one_f_one_b<> policy{.stages = world, .microbatches = s.accumulation};
            stage.reset();
            sync_stream(stage.stream());
            paci::executor<paci::one_f_one_b<>, cuex::cuda_stage, paci::nccl_communicator> exec(policy, {&stage}, comm);
            for (int u = 0; u < s.updates; ++u) exec.run(s.accumulation);
            exec.drain();
            sync_stream(stage.stream());
            model ref(s, microbatches);
            train_unpipelined(ref, s, microbatches);
            std::size_t bitwise = 0;
            double worst = 0;
            const auto got = to_host(stage.parameters());
            const bool ok = compare(got, to_host(ref.stages[static_cast<std::size_t>(rank)]->parameters()), 1e-5, bitwise, worst);
            char buf[200];
            std::snprintf(buf, sizeof buf, "1F1B-flush over NCCL: stage %d equals the unpipelined run (max rel. diff %.3g; %zu of %zu bitwise)",
                          rank, worst, bitwise, got.size());
            result.require(ok, buf);
        }
        // PACI: recorded versions against the replay.
        {
            const paci::paci_policy<> policy{.stages = world, .microbatches = s.accumulation};
            stage.reset();
            sync_stream(stage.stream());
            paci::executor<paci::paci_policy<>, cuex::cuda_stage, paci::nccl_communicator> exec(policy, {&stage}, comm);
            for (int u = 0; u < s.updates; ++u) exec.run(s.accumulation);
            exec.drain();
            sync_stream(stage.stream());
            check_versions(policy, s.updates, exec.trace(), 2 * microbatches, result);
            const paci::replay_result predicted = [&] {
                paci::paci_policy<> window = policy;
                window.steps = s.updates;
                return paci::replay(window.generate(), policy.controller());
            }();
            const int drift = predicted.per_stage[static_cast<std::size_t>(rank)].max_drift;
            result.require(drift <= policy.drift_bound(rank),
                           "PACI over NCCL: drift of stage " + std::to_string(rank) + " (equal to the replay's) " +
                               std::to_string(drift) + " <= bound " + std::to_string(policy.drift_bound(rank)));
            if (rank + 1 == world) {
                const auto l = to_host(losses);
                const int q = std::min(4, s.updates / 2) * s.accumulation;
                result.require(mean(l, microbatches - q, q) < mean(l, 0, q), "PACI over NCCL: the loss goes down");
            }
        }
    } catch (const std::exception& e) {
        std::cout << result.prefix << " FAIL " << e.what() << "\n" << std::flush;
        return 1;
    }
    return result.ok ? 0 : 1;
}

/// Starts one process per GPU (this program again, with --nccl-rank) and waits for them.
bool run_nccl_layout(int devices, bool quick) {
    const int world = std::min(devices, 8);
    std::cout << "\n2. one process per GPU over paci::nccl_communicator: " << world << " processes\n" << std::flush;
    const std::string id_file = "/tmp/paci-cuda-example-" + std::to_string(::getpid()) + ".ncclid";
    std::remove(id_file.c_str());
    std::vector<pid_t> children;
    for (int r = 0; r < world; ++r) {
        std::vector<std::string> args{"/proc/self/exe", "--nccl-rank", std::to_string(r), "--nccl-world",
                                      std::to_string(world), "--nccl-id", id_file};
        if (quick) args.emplace_back("--quick");
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        pid_t pid = 0;
        if (posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), environ) != 0) {
            std::cout << "    FAIL could not start rank " << r << "\n";
            for (const pid_t c : children) ::kill(c, SIGKILL);
            return false;
        }
        children.push_back(pid);
    }
    bool ok = true;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(240);
    std::vector<bool> done(children.size(), false);
    for (std::size_t left = children.size(); left > 0;) {
        for (std::size_t i = 0; i < children.size(); ++i) {
            if (done[i]) continue;
            int status = 0;
            if (::waitpid(children[i], &status, WNOHANG) == children[i]) {
                done[i] = true;
                --left;
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                    std::cout << "    FAIL rank " << i << " exited with status " << status << "\n";
                    ok = false;
                }
            }
        }
        if (left > 0 && std::chrono::steady_clock::now() > deadline) {
            std::cout << "    FAIL the ranks did not finish within 240 s: killed\n";
            for (std::size_t i = 0; i < children.size(); ++i)
                if (!done[i]) {
                    ::kill(children[i], SIGKILL);
                    ::waitpid(children[i], nullptr, 0);
                }
            ok = false;
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::remove(id_file.c_str());
    std::cout << "    " << (ok ? "ok   " : "FAIL ") << "every rank passed its checks\n";
    return ok;
}

} // namespace

int main(int argc, char** argv) {
    bool quick = false;
    for (int i = 1; i < argc; ++i) quick = quick || std::strcmp(argv[i], "--quick") == 0;
    int devices = 0;
    const cudaError_t probe = cudaGetDeviceCount(&devices);
    if (probe != cudaSuccess || devices == 0) {
        std::printf("skipped: no CUDA device (cudaGetDeviceCount: %s, %d devices); nothing was run\n",
                    probe == cudaSuccess ? "no error" : cudaGetErrorString(probe), devices);
        return exit_skipped;
    }
    const std::string rank = arg_after(argc, argv, "--nccl-rank");
    if (!rank.empty())
        return nccl_rank(std::atoi(rank.c_str()), std::atoi(arg_after(argc, argv, "--nccl-world").c_str()),
                         arg_after(argc, argv, "--nccl-id"), quick);

    outcome result;
    try {
        const settings s = check_settings(quick);
        std::cout << "1. one GPU, in process: " << s.stages << " stages, one thread and one CUDA stream each\n\n";
        train_inprocess(paci::one_f_one_b<>{.stages = s.stages, .microbatches = s.accumulation}, "1F1B-flush", s, result);
        train_inprocess(paci::paci_policy<>{.stages = s.stages, .microbatches = s.accumulation}, "PACI", s, result);
        std::cout << "steady state without host synchronisation (PACI)\n";
        check_no_host_sync(s, result);
        std::cout << "\n";
        time_overhead(quick);
        time_throughput(quick);
        if (devices < 2)
            std::cout << "\n2. one process per GPU over paci::nccl_communicator: skipped: " << devices
                      << " CUDA device (needs at least 2)\n";
        else
            result.ok = run_nccl_layout(devices, quick) && result.ok;
    } catch (const std::exception& e) {
        std::cout << "FAIL " << e.what() << "\n";
        result.ok = false;
    }
    std::cout << "\n" << (result.ok ? "every check passed" : "SOME CHECK FAILED") << "\n";
    return result.ok ? 0 : 1;
}
