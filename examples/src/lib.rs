//! Shared code of the examples: [`demo`], the login demo's app (served by
//! `cargo run -p examples --example login`, tested over HTTP in
//! `tests/login_flow.rs`), and [`custom_store`], a small store of the
//! kind a third party would write, run through the conformance suite by
//! `tests/custom_store.rs`. The benchmarks live in `bench/`
//! (`session-bench`).

pub mod custom_store;
pub mod demo;

/// The README's code blocks, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
