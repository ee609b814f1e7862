//! The size a session's data takes as JSON, kept up to date as changes
//! apply: a commit round checks the session against
//! [`SessionConfig::max_size`](super::SessionConfig::max_size) at the cost
//! of the keys it changes, not by serialising the whole session again.

use serde::Serialize;
use serde_json::Value;

use crate::Data;

/// Bytes `value` takes as compact JSON (what `serde_json::to_vec` writes),
/// counted without building the text.
pub(super) fn json_len<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Only strings and `Value`s are counted here: both always serialise
    // (a `Value`'s object keys are strings, its numbers finite), and the
    // counter never fails, so there is no error to lose.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// The JSON size of a data object, by its entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct DataSize {
    /// How many keys the object has.
    entries: usize,
    /// The bytes of every `"key":value`, without separating commas.
    bytes: usize,
}

impl DataSize {
    /// Counts `data` entry by entry (once per record a manager first sees).
    pub(super) fn of(data: &Data) -> Self {
        let mut size = Self::default();
        for (key, value) in data {
            size.add(key, value);
        }
        size
    }

    /// The object's length as compact JSON: braces, entries and commas.
    pub(super) fn total(self) -> usize {
        2 + self.bytes + self.entries.saturating_sub(1)
    }

    /// Counts a new entry.
    pub(super) fn add(&mut self, key: &str, value: &Value) {
        self.entries += 1;
        self.bytes += entry_len(key, value);
    }

    /// Uncounts an entry that leaves.
    pub(super) fn sub(&mut self, key: &str, value: &Value) {
        self.entries = self.entries.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(entry_len(key, value));
    }
}

/// `"key":value`.
fn entry_len(key: &str, value: &Value) -> usize {
    json_len(key) + 1 + json_len(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn serialised(data: &Data) -> usize {
        serde_json::to_vec(data).map(|v| v.len()).unwrap_or(0)
    }

    #[test]
    fn counts_what_serde_json_writes() {
        let mut data = Data::new();
        assert_eq!(DataSize::of(&data).total(), serialised(&data));
        data.insert("a".into(), json!(1));
        assert_eq!(DataSize::of(&data).total(), serialised(&data));
        data.insert(
            "quote\"d\n\u{1}é".into(),
            json!({"x": [1.5, "two\t", null, true]}),
        );
        data.insert("k".into(), json!("\u{2028}</script>"));
        assert_eq!(DataSize::of(&data).total(), serialised(&data));
    }

    #[test]
    fn follows_adds_and_removals() {
        let mut data = Data::new();
        let mut size = DataSize::of(&data);
        for i in 0..20 {
            let (key, value) = (format!("k{i}"), json!([i, "v"]));
            size.add(&key, &value);
            data.insert(key, value);
            assert_eq!(size.total(), serialised(&data));
        }
        for i in (0..20).step_by(3) {
            let key = format!("k{i}");
            if let Some(old) = data.remove(&key) {
                size.sub(&key, &old);
            }
            assert_eq!(size.total(), serialised(&data));
        }
    }
}
