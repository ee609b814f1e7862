//! A record as a manager last read or wrote it, shared (`Arc`) between
//! the requests that loaded it, the commit rounds that build on it and
//! the answers they give, instead of copied for each.

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use super::size::DataSize;
use crate::Record;

/// A record and, once known, its data's JSON size.
#[derive(Debug)]
pub(super) struct Stored {
    record: Record,
    size: OnceLock<DataSize>,
}

impl Stored {
    /// A record read from the store (its size is counted when a commit
    /// first needs it).
    pub(super) fn loaded(record: Record) -> Arc<Self> {
        Arc::new(Self {
            record,
            size: OnceLock::new(),
        })
    }

    /// A record this manager wrote, whose size it tracked.
    pub(super) fn written(record: Record, size: DataSize) -> Arc<Self> {
        Arc::new(Self {
            record,
            size: OnceLock::from(size),
        })
    }

    /// The data's JSON size.
    pub(super) fn size(&self) -> DataSize {
        *self.size.get_or_init(|| DataSize::of(&self.record.data))
    }
}

impl Deref for Stored {
    type Target = Record;

    fn deref(&self) -> &Record {
        &self.record
    }
}
