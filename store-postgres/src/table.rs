//! The session table's name: validated once, so it can be spliced into
//! SQL text safely. A leaf: the options, the schema and the store all use
//! it.

use std::fmt;
use std::str::FromStr;

use session_core::Error;

/// The longest accepted schema or table name, in bytes. Leaves room for
/// the suffixes of the companion objects (`<table>_meta`,
/// `<table>_expires_at_idx`, ...) inside PostgreSQL's 63-byte identifiers.
pub const MAX_NAME_LEN: usize = 48;

/// The table name used when none is configured (in the connection's
/// `search_path`, usually `public`).
pub const DEFAULT_TABLE_NAME: &str = "sessions";

/// A validated table name, optionally schema-qualified (`sessions`,
/// `auth.sessions`): each part an ASCII letter or underscore, then ASCII
/// letters, digits or underscores, at most [`MAX_NAME_LEN`] bytes.
///
/// Parts are always double-quoted in SQL, so they keep their case
/// (`Sessions` and `sessions` are different tables). Only names that pass
/// this check are ever written into SQL text, so a configured name cannot
/// inject SQL.
///
/// ```
/// use session_store_postgres::TableName;
///
/// assert!(TableName::new("web_sessions").is_ok());
/// assert_eq!(TableName::new("auth.sessions")?.schema(), Some("auth"));
/// assert!(TableName::new("1st").is_err());
/// assert!(TableName::new("a.b.c").is_err());
/// assert!(TableName::new("sessions; DROP TABLE users").is_err());
/// # Ok::<(), session_store_postgres::InvalidTableName>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    schema: Option<String>,
    table: String,
}

fn valid_part(part: &str) -> bool {
    let mut chars = part.chars();
    let first = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') && part.len() <= MAX_NAME_LEN
}

impl TableName {
    /// Validates `name`: `table` or `schema.table`.
    ///
    /// # Errors
    ///
    /// [`InvalidTableName`] when a part is empty, too long, does not start
    /// with an ASCII letter or underscore, or holds anything but ASCII
    /// letters, digits and underscores; or when there is more than one dot.
    pub fn new(name: &str) -> Result<Self, InvalidTableName> {
        let invalid = || InvalidTableName {
            name: name.to_owned(),
        };
        let (schema, table) = match name.split_once('.') {
            Some((schema, table)) => (Some(schema), table),
            None => (None, name),
        };
        if !valid_part(table) || schema.is_some_and(|s| !valid_part(s)) {
            return Err(invalid());
        }
        Ok(Self {
            schema: schema.map(str::to_owned),
            table: table.to_owned(),
        })
    }

    /// The schema part, if the name has one.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The table part.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The name of a companion object (`<table><suffix>`) in the same
    /// schema, quoted for SQL.
    pub(crate) fn quoted_with(&self, suffix: &str) -> String {
        match &self.schema {
            Some(schema) => format!("\"{schema}\".\"{}{suffix}\"", self.table),
            None => format!("\"{}{suffix}\"", self.table),
        }
    }

    /// The name quoted for SQL: `"schema"."table"` or `"table"`.
    pub(crate) fn quoted(&self) -> String {
        self.quoted_with("")
    }
}

impl Default for TableName {
    fn default() -> Self {
        Self {
            schema: None,
            table: DEFAULT_TABLE_NAME.to_owned(),
        }
    }
}

impl FromStr for TableName {
    type Err = InvalidTableName;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::new(name)
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.table),
            None => f.write_str(&self.table),
        }
    }
}

impl fmt::Debug for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TableName({self})")
    }
}

/// A table name that [`TableName::new`] rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid table name {name:?}: use `table` or `schema.table`, each part an ASCII letter or \
     underscore followed by at most {max} ASCII letters, digits or underscores",
    max = MAX_NAME_LEN - 1
)]
pub struct InvalidTableName {
    /// The rejected name.
    pub name: String,
}

impl From<InvalidTableName> for Error {
    fn from(e: InvalidTableName) -> Self {
        Error::backend(crate::NAME, "open", false, e)
    }
}
