//! The integrity digest kept beside each row: what makes "unreadable"
//! mean the same to loads and saves. A leaf: SQL text only.
//!
//! Every create and save writes, in the `digest` column, a 64-bit hash of
//! everything it wrote but the expiry: the key, the user, the version,
//! `created_at` and the data's exact text, computed by the server in the
//! same statement ([`digest_of`]). A row whose digest does not match what
//! it holds was not written by this store as it stands: damage anywhere
//! in it, in the data (a number beyond `f64`, nesting deeper than serde
//! reads, a lone surrogate, a value changed by hand), in the user (bytes
//! that are not UTF-8), in the version. Every statement that reads a
//! record returns whether it matches ([`intact`]), and the store answers
//! [`Error::Decode`](session_core::Error::Decode) for one that does not;
//! a save's compare-and-set requires it in its `WHERE`, so a save never
//! overwrites a row the store cannot read, wherever the damage is.
//! `touch` moves only the expiry, which the digest leaves out, so it keeps
//! the digest valid.
//!
//! The hash is PostgreSQL's own (`hashtextextended`, `hashint8extended`,
//! `hash_array_extended`: the functions behind hash indexes and hash
//! partitioning, kept stable across releases for them), computed in the
//! server's process, about 0.3 µs per row; `sha256()` (through OpenSSL
//! 3.0 on PostgreSQL 15) was measured at 1 to 2 µs per row, three times
//! per request cycle (load, save's check, save's new digest), on a cycle
//! that costs about eighty µs of CPU at 64 tasks. Like those functions, its values
//! differ between little- and big-endian servers: a dump restored onto a
//! server of the other kind loads every session as unreadable. A 64-bit
//! hash catches damage, not forgery: whoever edits a row and writes the
//! matching digest is trusted as this store would be.

/// SQL: the digest of a row whose fields are the SQL expressions given
/// (`key` and `user` of type `bytea`, the user `NULL` for none, `version`
/// and `created_at` `bigint`, `data` the JSON's `text`).
pub(crate) fn digest_of(
    key: &str,
    user: &str,
    version: &str,
    created_at: &str,
    data: &str,
) -> String {
    format!(
        "hash_array_extended(ARRAY[{key}, {user}]::bytea[], hashint8extended({version}, \
         hashint8extended({created_at}, hashtextextended({data}, 0))))"
    )
}

/// SQL: the digest of what the row (columns qualified by `prefix`, such as
/// `s.` or nothing) holds.
pub(crate) fn stored(prefix: &str) -> String {
    digest_of(
        &format!("{prefix}key"),
        &format!("{prefix}\"user\""),
        &format!("{prefix}version"),
        &format!("{prefix}created_at"),
        &format!("{prefix}data::text"),
    )
}

/// SQL: whether the row (columns qualified by `prefix`) matches its
/// digest; `false` for a row without one.
pub(crate) fn intact(prefix: &str) -> String {
    format!("coalesce({prefix}digest = {}, false)", stored(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_but_the_expiry_is_hashed() {
        let text = stored("s.");
        for field in ["s.key", "s.\"user\"", "s.version", "s.created_at", "s.data"] {
            assert!(text.contains(field), "{field} in {text}");
        }
        assert!(!text.contains("expires_at"));
        assert_eq!(
            intact(""),
            format!("coalesce(digest = {}, false)", stored(""))
        );
    }
}
