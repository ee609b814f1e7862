//! How the session cookie is written.

use std::borrow::Cow;

pub use cookie::SameSite;

/// Attributes of the session cookie.
///
/// Defaults: name `__Host-session` (`session` when `Secure` is off, or
/// with a `Domain` or another `Path`; see below), `HttpOnly` (always),
/// `Secure`, `SameSite=Lax`, `Path=/`, no `Domain`, persistent (a
/// `Max-Age` that follows the session's expiry).
///
/// The `__Host-` prefix makes browsers accept the cookie only when it is
/// `Secure`, has `Path=/` and no `Domain`, and only from the host itself.
/// Without it, a sibling subdomain (`evil.example.com` next to
/// `app.example.com`), or a page served over plain HTTP on the same host,
/// can plant a cookie of the same name for the parent domain, which the
/// browser then sends beside ours: to fix a session on the victim, or to
/// shadow the real one (OWASP Session Management Cheat Sheet, "Cookies").
/// The layer copes with such duplicates (it uses the first that names a
/// live session), but the prefix keeps them from being set at all. An
/// explicit [`CookieConfig::with_name`] is used as given.
///
/// `HttpOnly` cannot be switched off: the cookie holds the only secret that
/// proves a login, and no script ever needs to read it. This is what keeps
/// an XSS bug from turning into stolen sessions.
///
/// ```
/// use session_tower::{CookieConfig, SameSite};
///
/// assert_eq!(CookieConfig::default().name(), "__Host-session");
/// // Plain-HTTP development: the prefix needs `Secure`.
/// assert_eq!(CookieConfig::default().with_secure(false).name(), "session");
/// let cookie = CookieConfig::default()
///     .with_name("__Host-id")
///     .with_same_site(SameSite::Strict)
///     .with_persistent(false); // a browser-session cookie
/// assert_eq!(cookie.name(), "__Host-id");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConfig {
    /// The name set with [`CookieConfig::with_name`]; `None` for the
    /// default, which depends on the other attributes.
    name: Option<Cow<'static, str>>,
    secure: bool,
    same_site: SameSite,
    path: Cow<'static, str>,
    domain: Option<Cow<'static, str>>,
    persistent: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: None,
            secure: true,
            same_site: SameSite::Lax,
            path: Cow::Borrowed("/"),
            domain: None,
            persistent: true,
        }
    }
}

impl CookieConfig {
    /// Sets the cookie name. Prefer `__Host-…` on HTTPS sites (the
    /// default name has it): browsers then refuse the cookie unless it is
    /// `Secure`, has `Path=/` and no `Domain`, so a sibling subdomain
    /// cannot plant one. Browsers also refuse a `__Host-` cookie that
    /// lacks those attributes, so keep them with such a name.
    ///
    /// A name that is not a valid cookie name (empty, or with separators,
    /// spaces or control characters) is ignored and the previous name kept;
    /// [`CookieConfig::is_valid_name`] tells in advance.
    pub fn with_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        let name = name.into();
        if Self::is_valid_name(&name) {
            self.name = Some(name);
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

    /// The cookie name: the one set, or by default `__Host-session` when
    /// the cookie can carry that prefix (`Secure`, `Path=/`, no `Domain`)
    /// and `session` otherwise.
    pub fn name(&self) -> &str {
        match &self.name {
            Some(name) => name,
            None if self.secure && self.domain.is_none() && self.path == "/" => "__Host-session",
            None => "session",
        }
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
        let mut cookie = cookie::Cookie::new(self.name().to_owned(), value);
        cookie.set_http_only(true);
        cookie.set_secure(self.secure);
        cookie.set_same_site(self.same_site);
        cookie.set_path(self.path.clone());
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.clone());
        }
        cookie
    }
}

/// The values of the cookies named `name` in `headers` (the values of a
/// request's `Cookie` headers), in the order sent.
///
/// Works on bytes: a pair that is not UTF-8 or not ASCII (`greeting=héllo`,
/// which any script or sibling host can set) is skipped and hides
/// nothing, where a `HeaderValue::to_str` of the whole header would fail
/// and lose every cookie in it. Pairs are split at `;`, name and value at
/// the first `=` and trimmed of spaces and tabs; a pair without `=` is
/// skipped, and so is an empty name (it never equals a valid name). A
/// value in one balanced pair of double quotes loses them (RFC 6265
/// `cookie-value`).
pub(crate) fn cookie_values<'a, H>(headers: H, name: &'a str) -> CookieValues<'a, H::IntoIter>
where
    H: IntoIterator<Item = &'a http::HeaderValue>,
{
    CookieValues {
        headers: headers.into_iter(),
        rest: &[],
        name: name.as_bytes(),
    }
}

/// The iterator of [`cookie_values`]: a plain scan of each header's bytes
/// for `;`, then of each pair for its first `=` (no per-byte closures:
/// this runs on every request that uses its session).
pub(crate) struct CookieValues<'a, I> {
    headers: I,
    /// What is left of the header being scanned.
    rest: &'a [u8],
    name: &'a [u8],
}

impl<'a, I: Iterator<Item = &'a http::HeaderValue>> Iterator for CookieValues<'a, I> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if self.rest.is_empty() {
                self.rest = self.headers.next()?.as_bytes();
                continue;
            }
            let pair = match find(self.rest, b';') {
                Some(end) => {
                    let (pair, rest) = self.rest.split_at(end);
                    self.rest = rest.get(1..).unwrap_or_default();
                    pair
                }
                None => std::mem::take(&mut self.rest),
            };
            if let Some(eq) = find(pair, b'=') {
                let (key, value) = pair.split_at(eq);
                if trim(key) == self.name {
                    return Some(unquote(trim(value.get(1..).unwrap_or_default())));
                }
            }
        }
    }
}

/// The first position of `byte` in `bytes`, eight bytes at a time (a
/// bit trick that tells whether a word holds the byte), then one by one.
fn find(bytes: &[u8], byte: u8) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let pattern = ONES * u64::from(byte);
    let mut start = 0;
    for chunk in bytes.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word) ^ pattern;
        if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
            break;
        }
        start += 8;
    }
    let tail = bytes.get(start..)?;
    tail.iter().position(|b| *b == byte).map(|i| start + i)
}

/// `bytes` without the spaces and tabs around it.
fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
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
            .get(config.name().len() + 1..)
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
fn unquote(value: &[u8]) -> &[u8] {
    match value
        .strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
    {
        Some(inner) if !inner.contains(&b'"') => inner,
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::{CookieConfig, RenderedCookie, SameSite, cookie_values, unquote};

    /// Every value of `config`'s cookie as the `cookie` crate parses the
    /// headers it can read as text.
    fn reference_values(config: &CookieConfig, headers: &[http::HeaderValue]) -> Vec<Vec<u8>> {
        headers
            .iter()
            .filter_map(|h| h.to_str().ok())
            .flat_map(cookie::Cookie::split_parse)
            .filter_map(Result::ok)
            .filter(|c| c.name_raw() == Some(config.name()))
            .filter_map(|c| c.value_raw().map(|v| unquote(v.as_bytes()).to_vec()))
            .collect()
    }

    fn values(config: &CookieConfig, headers: &[http::HeaderValue]) -> Vec<Vec<u8>> {
        cookie_values(headers, config.name())
            .map(<[u8]>::to_vec)
            .collect()
    }

    fn headers_of(values: &[Vec<u8>]) -> Vec<http::HeaderValue> {
        values
            .iter()
            .filter_map(|v| http::HeaderValue::from_bytes(v).ok())
            .collect()
    }

    #[test]
    fn values_agree_with_the_cookie_crate_on_text_headers() {
        let id = "A".repeat(43);
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
            vec![format!("session=planted; session={id}")],
        ];
        for config in [
            CookieConfig::default().with_secure(false),
            CookieConfig::default(),
            CookieConfig::default().with_name("__Host-id"),
        ] {
            for case in &cases {
                let case: Vec<Vec<u8>> = case
                    .iter()
                    .map(|c| c.replace("session", config.name()).into_bytes())
                    .collect();
                let headers = headers_of(&case);
                assert_eq!(
                    values(&config, &headers),
                    reference_values(&config, &headers),
                    "{case:?}"
                );
            }
        }
    }

    #[test]
    fn find_finds_the_first_byte_wherever_it_is() {
        for len in 0..40 {
            for at in 0..=len {
                let mut bytes = vec![b'a'; len];
                if at < len {
                    bytes[at] = b';';
                    if at + 3 < len {
                        bytes[at + 3] = b';';
                    }
                }
                let want = (at < len).then_some(at);
                assert_eq!(super::find(&bytes, b';'), want, "{len} {at}");
            }
        }
        assert_eq!(super::find(&[0xff, 0x3b, 0x3b], b';'), Some(1));
    }

    #[test]
    fn a_pair_that_is_not_ascii_or_utf8_hides_nothing() {
        let config = CookieConfig::default();
        let id = "A".repeat(43);
        let name = config.name();
        for other in [
            "greeting=h\u{e9}llo".as_bytes().to_vec(),
            b"bin=\xff\xfe\x80".to_vec(),
            "\u{1f980}=crab".as_bytes().to_vec(),
        ] {
            let mut header = other.clone();
            header.extend_from_slice(format!("; {name}={id}").as_bytes());
            let headers = headers_of(&[header]);
            assert_eq!(headers.len(), 1, "{other:?} must make a header value");
            assert!(headers[0].to_str().is_err(), "to_str would lose the header");
            assert_eq!(values(&config, &headers), vec![id.clone().into_bytes()]);
        }
    }

    #[test]
    fn the_default_name_carries_the_host_prefix_only_when_it_may() {
        assert_eq!(CookieConfig::default().name(), "__Host-session");
        assert_eq!(CookieConfig::default().with_secure(false).name(), "session");
        assert_eq!(
            CookieConfig::default().with_domain("example.com").name(),
            "session"
        );
        assert_eq!(CookieConfig::default().with_path("/app").name(), "session");
        assert_eq!(
            CookieConfig::default()
                .with_secure(false)
                .with_name("sid")
                .name(),
            "sid"
        );
        let set = RenderedCookie::new(CookieConfig::default()).set("v", 60);
        assert!(set.starts_with("__Host-session=v;"), "{set}");
        for attribute in ["Secure", "Path=/"] {
            assert!(set.contains(attribute), "{set}");
        }
        assert!(!set.contains("Domain"), "{set}");
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
        assert_eq!(unquote(id.as_bytes()), id.as_bytes());
        assert_eq!(unquote(format!("\"{id}\"").as_bytes()), id.as_bytes());
        for bad in [
            format!("\"\"\"{id}\"\""),
            format!("\"{id}"),
            format!("{id}\""),
            format!("\"\"{id}\"\""),
            format!("\"{id}\"\""),
            "\"".to_owned(),
        ] {
            let unquoted = unquote(bad.as_bytes());
            assert_ne!(unquoted, id.as_bytes(), "{bad:?}");
            let text = std::str::from_utf8(unquoted).unwrap_or_default();
            assert!(session_core::SessionId::parse(text).is_err(), "{bad:?}");
        }
    }
}
