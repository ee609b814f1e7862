//! How the session cookie is written.

use std::borrow::Cow;

pub use cookie::SameSite;

/// Attributes of the session cookie.
///
/// Defaults: name `session`, `HttpOnly` (always; see below), `Secure`,
/// `SameSite=Lax`, `Path=/`, no `Domain`, persistent (a `Max-Age` that
/// follows the session's expiry).
///
/// `HttpOnly` cannot be switched off: the cookie holds the only secret that
/// proves a login, and no script ever needs to read it. This is what keeps
/// an XSS bug from turning into stolen sessions.
///
/// ```
/// use session_tower::{CookieConfig, SameSite};
///
/// let cookie = CookieConfig::default()
///     .with_name("__Host-session")
///     .with_same_site(SameSite::Strict)
///     .with_persistent(false); // a browser-session cookie
/// assert_eq!(cookie.name(), "__Host-session");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConfig {
    name: Cow<'static, str>,
    secure: bool,
    same_site: SameSite,
    path: Cow<'static, str>,
    domain: Option<Cow<'static, str>>,
    persistent: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: Cow::Borrowed("session"),
            secure: true,
            same_site: SameSite::Lax,
            path: Cow::Borrowed("/"),
            domain: None,
            persistent: true,
        }
    }
}

impl CookieConfig {
    /// Sets the cookie name. Prefer `__Host-…` on HTTPS sites: browsers
    /// then refuse the cookie unless it is `Secure`, has `Path=/` and no
    /// `Domain`, so a sibling subdomain cannot plant one.
    ///
    /// A name that is not a valid cookie name (empty, or with separators,
    /// spaces or control characters) is ignored and the previous name kept;
    /// [`CookieConfig::is_valid_name`] tells in advance.
    pub fn with_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        let name = name.into();
        if Self::is_valid_name(&name) {
            self.name = name;
        } else {
            tracing::error!(name = %name, "invalid session cookie name ignored");
        }
        self
    }

    /// Whether `name` is a valid cookie name (an RFC 6265 token).
    pub fn is_valid_name(name: &str) -> bool {
        !name.is_empty()
            && name.bytes().all(|b| {
                b.is_ascii_graphic()
                    && !matches!(
                        b,
                        b'(' | b')'
                            | b'<'
                            | b'>'
                            | b'@'
                            | b','
                            | b';'
                            | b':'
                            | b'\\'
                            | b'"'
                            | b'/'
                            | b'['
                            | b']'
                            | b'?'
                            | b'='
                            | b'{'
                            | b'}'
                    )
            })
    }

    /// Sets the `Secure` attribute (default on).
    ///
    /// **Only switch this off for plain-HTTP local development.** Without
    /// `Secure`, the browser also sends the session id over unencrypted
    /// HTTP, where anyone on the network path can read it and take over the
    /// session.
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Sets `SameSite` (default `Lax`: sent on top-level navigation, not on
    /// cross-site subrequests or form posts).
    pub fn with_same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// Sets `Path` (default `/`).
    pub fn with_path(mut self, path: impl Into<Cow<'static, str>>) -> Self {
        self.path = path.into();
        self
    }

    /// Sets `Domain` (default none: the cookie goes back only to the host
    /// that set it, which is the safest choice).
    pub fn with_domain(mut self, domain: impl Into<Cow<'static, str>>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Persistent cookies (default) carry a `Max-Age` that follows the
    /// session's expiry, so a signed-in user survives a browser restart;
    /// browser-session cookies (`false`) carry none and end with the
    /// browser, while the server-side expiry still applies.
    pub fn with_persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self
    }

    /// The cookie name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the cookie is `Secure`.
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Whether the cookie is persistent.
    pub fn persistent(&self) -> bool {
        self.persistent
    }

    /// A `Set-Cookie` value that sets the cookie to `value`, living
    /// `max_age_secs` when persistent.
    pub(crate) fn set(&self, value: String, max_age_secs: i64) -> String {
        let mut cookie = self.base(value);
        if self.persistent {
            cookie.set_max_age(cookie::time::Duration::seconds(max_age_secs.max(0)));
        }
        cookie.to_string()
    }

    /// A `Set-Cookie` value that overwrites the cookie with an empty,
    /// already expired one.
    pub(crate) fn clear(&self) -> String {
        let mut cookie = self.base(String::new());
        cookie.set_max_age(cookie::time::Duration::ZERO);
        cookie.set_expires(cookie::time::OffsetDateTime::UNIX_EPOCH);
        cookie.to_string()
    }

    fn base(&self, value: String) -> cookie::Cookie<'static> {
        let mut cookie = cookie::Cookie::new(self.name.clone(), value);
        cookie.set_http_only(true);
        cookie.set_secure(self.secure);
        cookie.set_same_site(self.same_site);
        cookie.set_path(self.path.clone());
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.clone());
        }
        cookie
    }

    /// The value of this cookie in a request's `Cookie` headers: the first
    /// one of that name (parsed by the `cookie` crate; pairs it cannot
    /// parse are skipped).
    pub(crate) fn find<'a>(&self, headers: &'a http::HeaderMap) -> Option<&'a str> {
        headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|h| h.to_str().ok())
            .flat_map(cookie::Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|c| c.name_raw() == Some(&*self.name))
            .and_then(|c| c.value_raw())
            .map(unquote)
    }
}

/// A cookie value with exactly one balanced pair of double quotes around
/// it loses them (RFC 6265 `cookie-value`); any other quote stays, so
/// the id parser refuses it and no store is asked.
fn unquote(value: &str) -> &str {
    match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) if !inner.contains('"') => inner,
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::unquote;

    #[test]
    fn only_one_balanced_pair_of_quotes_is_removed() {
        let id = "A".repeat(43);
        assert_eq!(unquote(&id), id);
        assert_eq!(unquote(&format!("\"{id}\"")), id);
        for bad in [
            format!("\"\"\"{id}\"\""),
            format!("\"{id}"),
            format!("{id}\""),
            format!("\"\"{id}\"\""),
            format!("\"{id}\"\""),
            "\"".to_owned(),
        ] {
            assert_ne!(unquote(&bad), id, "{bad:?}");
            assert!(
                session_core::SessionId::parse(unquote(&bad)).is_err(),
                "{bad:?}"
            );
        }
    }
}
