#pragma once
/// \file
/// Umbrella header: the whole library, runtime included (the stage and communicator concepts, the
/// executor, the in-process transport and pipeline), except the optional transports (`paci/mpi/`,
/// `paci/nccl/`, their own CMake components) and the Catch2 matchers (`paci/testing/`).

#include <paci/core/action.hpp>
#include <paci/core/error.hpp>
#include <paci/core/lower.hpp>
#include <paci/core/schedule.hpp>
#include <paci/core/shape.hpp>

#include <paci/version/accumulation.hpp>
#include <paci/version/double_buffer.hpp>
#include <paci/version/flush.hpp>
#include <paci/version/stash.hpp>
#include <paci/version/version_controller.hpp>

#include <paci/policy/dualpipe_v.hpp>
#include <paci/policy/gpipe.hpp>
#include <paci/policy/interleaved.hpp>
#include <paci/policy/interleaved_zero_bubble.hpp>
#include <paci/policy/looped_bfs.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/policy/pipedream.hpp>
#include <paci/policy/program.hpp>
#include <paci/policy/schedule_policy.hpp>
#include <paci/policy/zb_v.hpp>
#include <paci/policy/zero_bubble.hpp>

#include <paci/analysis/analyze.hpp>
#include <paci/analysis/diagnostic.hpp>
#include <paci/analysis/drift.hpp>
#include <paci/analysis/memory.hpp>
#include <paci/analysis/replay.hpp>
#include <paci/analysis/validate.hpp>

#include <paci/sim/cost_model.hpp>
#include <paci/sim/greedy.hpp>
#include <paci/sim/simulate.hpp>

#include <paci/io/chrome_trace.hpp>
#include <paci/io/csv.hpp>
#include <paci/io/grid.hpp>
#include <paci/io/svg.hpp>

#include <paci/plan/planner.hpp>

#include <paci/runtime/communicator.hpp>
#include <paci/runtime/errors.hpp>
#include <paci/runtime/executor.hpp>
#include <paci/runtime/inprocess.hpp>
#include <paci/runtime/pipeline.hpp>
#include <paci/runtime/stage.hpp>
#include <paci/runtime/trace.hpp>
