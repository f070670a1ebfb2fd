//! rbuild-graph.
