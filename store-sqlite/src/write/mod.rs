//! The write path: every write of a store goes to one writer task, which
//! commits the writes waiting for it together, in few statements.
//!
//! The modules, each importing only those listed after it (no circle):
//!
//! - [`writer`]: the writer task, its queue and group commit; the typed
//!   entry points the store calls ([`Writer`]).
//! - [`grouped`]: a batch as a few multi-row statements, falling back to
//!   one write at a time when a statement fails.
//! - [`plan`]: orders a batch into steps that keep every write's
//!   one-by-one result.
//! - [`single`]: one write's own statements.
//! - [`gate`]: the commit hook that never lets a write commit after its
//!   caller gave up.
//! - [`types`]: what travels through all of them: each write with its
//!   typed reply. A leaf.
//!
//! They share the table's statements and the JSON parameters of the
//! batched forms with the reader, through [`crate::schema`], and the
//! record's columns through [`crate::codec::Row`].

mod gate;
mod grouped;
mod plan;
mod single;
#[cfg(test)]
mod tests;
mod types;
mod writer;

pub(crate) use types::{SaveOutcome, Touch};
pub(crate) use writer::Writer;
