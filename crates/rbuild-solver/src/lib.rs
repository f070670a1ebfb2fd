//! rbuild-solver.
