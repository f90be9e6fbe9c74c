#pragma once
/// \file
/// Pipeline shape: how many stages, how many ranks, and which rank runs each stage.

#include <paci/core/action.hpp>
#include <paci/core/error.hpp>

#include <ostream>
#include <string_view>
#include <vector>

namespace paci {

/// How stages are placed on ranks when there are more stages than ranks.
enum class stage_map : std::uint8_t {
    loop, ///< stage s on rank s % R (interleaved 1F1B)
    v,    ///< zigzag: chunk c runs ranks 0..R-1 when c is even and R-1..0 when odd (V-shaped schedules)
};

[[nodiscard]] constexpr std::string_view to_string(stage_map m) noexcept { return m == stage_map::loop ? "loop" : "v"; }
inline std::ostream& operator<<(std::ostream& os, stage_map m) { return os << to_string(m); }

/// Stages, ranks and the stage-to-rank map. A regular value; `validate()` checks it.
struct pipeline_shape {
    int stages = 1;
    int ranks = 1;
    stage_map map = stage_map::loop;

    /// Throws `config_error` (naming `api`) unless the shape is usable.
    void validate(std::string_view api = "pipeline_shape") const {
        detail::config_require(stages >= 1, api, "stages", stages, "must be >= 1");
        if (!(stages <= max_stages)) detail::config_fail(api, "stages", stages,
                               detail::concat("must be <= ", max_stages));
        detail::config_require(ranks >= 1, api, "ranks", ranks, "must be >= 1");
        if (!(stages % ranks == 0)) detail::config_fail(api, "stages", stages,
                               detail::concat("must be a multiple of ranks (", ranks, ")"));
        if (map == stage_map::v) {
            detail::config_require(stages % 2 == 0, api, "stages", stages, "must be even for the v map");
            detail::config_require(chunks() % 2 == 0, api, "stages / ranks", chunks(),
                                   "must be even for the v map");
        }
    }

    /// Stages per rank (0 for a shape with no ranks, which `validate()` refuses).
    [[nodiscard]] constexpr int chunks() const noexcept { return ranks >= 1 ? stages / ranks : 0; }

    /// The rank that runs `stage` (for a stage in [0, stages)); -1 for a shape with no ranks.
    [[nodiscard]] constexpr int rank_of(int stage) const noexcept {
        if (ranks < 1) return -1;
        const int c = stage / ranks;
        const int r = stage % ranks;
        return (map == stage_map::v && c % 2 == 1) ? ranks - 1 - r : r;
    }

    /// Index of `stage` among the stages of its rank (its chunk); -1 for a shape with no ranks.
    [[nodiscard]] constexpr int chunk_of(int stage) const noexcept { return ranks < 1 ? -1 : stage / ranks; }

    /// The stages of `rank`, in chunk order (none for a rank outside [0, ranks)).
    [[nodiscard]] std::vector<int> stages_of(int rank) const {
        std::vector<int> out;
        if (rank < 0 || rank >= ranks) return out;
        for (int c = 0; c < chunks(); ++c) {
            const int r = (map == stage_map::v && c % 2 == 1) ? ranks - 1 - rank : rank;
            out.push_back(c * ranks + r);
        }
        return out;
    }

    friend constexpr bool operator==(const pipeline_shape&, const pipeline_shape&) = default;
};

inline std::ostream& operator<<(std::ostream& os, const pipeline_shape& s) {
    return os << "pipeline_shape{.stages = " << s.stages << ", .ranks = " << s.ranks << ", .map = " << s.map
              << "}";
}

} // namespace paci
