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
    /// `max_age_secs` when persistent: the reference rendering, by the
    /// `cookie` crate, that the layer's [`RenderedCookie::set`] must equal
    /// (the tests check it).
    #[cfg(test)]
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
    /// one of that name.
    ///
    /// Scans the `name=value` pairs in place instead of parsing each with
    /// `cookie::Cookie::split_parse`, which builds a whole `Cookie` per
    /// pair (under callgrind, about 1,600 instructions for a one-cookie
    /// header against about 700 for this scan, most of which is
    /// `to_str`'s check of the header). The result is the
    /// same: pairs are split at `;`, name and value at the first `=` and
    /// trimmed; a pair without `=` is skipped (the `cookie` crate refuses
    /// it), and so is an empty name (it never equals a valid name).
    pub(crate) fn find<'a>(&self, headers: &'a http::HeaderMap) -> Option<&'a str> {
        headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|h| h.to_str().ok())
            .flat_map(|h| h.split(';'))
            .find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                (name.trim() == self.name).then(|| unquote(value.trim()))
            })
    }
}

/// A [`CookieConfig`] with the attributes of its `Set-Cookie` value
/// rendered once, when the layer is built, instead of on every request
/// that sets the cookie (building a `cookie::Cookie` and formatting it
/// costs a few thousand instructions and several allocations).
#[derive(Debug, Clone)]
pub(crate) struct RenderedCookie {
    config: CookieConfig,
    /// Everything the `cookie` crate writes after `name=value` and before
    /// `Max-Age`: `; HttpOnly; SameSite=…; Secure; Path=…; Domain=…`.
    attributes: String,
}

impl RenderedCookie {
    /// Renders `config`'s attributes with the `cookie` crate itself, so
    /// the header is byte for byte what the `cookie` crate writes.
    pub(crate) fn new(config: CookieConfig) -> Self {
        let rendered = config.base(String::new()).to_string();
        // `rendered` is `name=` followed by the attributes.
        let attributes = rendered
            .get(config.name.len() + 1..)
            .unwrap_or_default()
            .to_owned();
        Self { config, attributes }
    }

    /// The configuration.
    pub(crate) fn config(&self) -> &CookieConfig {
        &self.config
    }

    /// The `Set-Cookie` value `CookieConfig::set` (the tests' reference) would
    /// render, built in one allocation.
    pub(crate) fn set(&self, value: &str, max_age_secs: i64) -> String {
        use std::fmt::Write as _;
        let name = self.config.name();
        let mut out =
            String::with_capacity(name.len() + 1 + value.len() + self.attributes.len() + 30);
        out.push_str(name);
        out.push('=');
        out.push_str(value);
        out.push_str(&self.attributes);
        if self.config.persistent {
            // The `cookie` crate writes `Max-Age` right after `Domain`.
            let _ = write!(out, "; Max-Age={}", max_age_secs.max(0));
        }
        out
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
    use super::{CookieConfig, RenderedCookie, SameSite, unquote};

    /// What `find` returned before it scanned in place: the `cookie`
    /// crate's parse of every pair.
    fn reference_find<'a>(config: &CookieConfig, headers: &'a http::HeaderMap) -> Option<&'a str> {
        headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|h| h.to_str().ok())
            .flat_map(cookie::Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|c| c.name_raw() == Some(config.name()))
            .and_then(|c| c.value_raw())
            .map(unquote)
    }

    #[test]
    fn find_agrees_with_the_cookie_crate() {
        let id = "A".repeat(43);
        let headers_of = |values: &[String]| {
            let mut map = http::HeaderMap::new();
            for v in values {
                if let Ok(v) = http::HeaderValue::from_str(v) {
                    map.append(http::header::COOKIE, v);
                }
            }
            map
        };
        let cases: Vec<Vec<String>> = vec![
            vec![],
            vec![format!("session={id}")],
            vec![format!("a=b; session={id}; c=d")],
            vec![format!("  session  =  {id}  ;x=y")],
            vec![format!("session=\"{id}\"")],
            vec![format!("sessionx={id}; xsession=1; session=2")],
            vec!["session".to_owned(), format!("session={id}")],
            vec![format!("=1; ; ;session={id}=more")],
            vec![format!(";;;  ; session=; session={id}")],
            vec!["a=1".to_owned(), format!("b=2; session={id}")],
            vec![format!("Session={id}")],
            vec![format!("session\t=\t{id}")],
            vec!["session==".to_owned()],
        ];
        for config in [
            CookieConfig::default(),
            CookieConfig::default().with_name("__Host-id"),
        ] {
            for case in &cases {
                let case: Vec<String> = case
                    .iter()
                    .map(|c| c.replace("session", config.name()))
                    .collect();
                let headers = headers_of(&case);
                assert_eq!(
                    config.find(&headers),
                    reference_find(&config, &headers),
                    "{case:?}"
                );
            }
        }
    }

    #[test]
    fn rendered_set_cookie_equals_the_cookie_crate() {
        let configs = [
            CookieConfig::default(),
            CookieConfig::default().with_secure(false),
            CookieConfig::default().with_persistent(false),
            CookieConfig::default()
                .with_name("__Host-s")
                .with_same_site(SameSite::Strict),
            CookieConfig::default()
                .with_same_site(SameSite::None)
                .with_secure(false),
            CookieConfig::default()
                .with_domain(".example.com")
                .with_path("/app"),
        ];
        for config in configs {
            let rendered = RenderedCookie::new(config.clone());
            for (value, secs) in [("A".repeat(43), 1800), (String::new(), 0), ("x".into(), -5)] {
                assert_eq!(
                    rendered.set(&value, secs),
                    config.set(value.clone(), secs),
                    "{config:?}"
                );
            }
        }
    }

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
