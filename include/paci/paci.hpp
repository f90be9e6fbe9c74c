#pragma once
/// \file
/// Umbrella header: the whole core library (no optional transports).

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

#include <paci/policy/gpipe.hpp>
#include <paci/policy/interleaved.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/policy/pipedream.hpp>
#include <paci/policy/schedule_policy.hpp>
#include <paci/policy/zero_bubble.hpp>

#include <paci/analysis/analyze.hpp>
#include <paci/analysis/diagnostic.hpp>
#include <paci/analysis/drift.hpp>
#include <paci/analysis/memory.hpp>
#include <paci/analysis/replay.hpp>
#include <paci/analysis/validate.hpp>
