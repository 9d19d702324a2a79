//! boocoder: an MCP server that runs coding tasks in isolated git worktrees and queues their
//! diffs as pending changes until the caller applies them.
//!
//! The data path reads top-down: [`mcp`] (the protocol edge) → [`engine`] (validation,
//! dispatch, the single run path) → [`store`] (SQL) / [`providers`] → [`backend`] (agents) →
//! [`worktree`] (git). See ARCHITECTURE.md for the map and the invariants.

pub mod backend;
pub mod config;
pub mod domain;
pub mod engine;
pub mod mcp;
pub mod projects;
pub mod providers;
pub mod store;
pub mod worktree;
