//! The cross-site request guard: refuses state-changing requests another
//! site made the browser send.
//!
//! `SameSite=Lax` keeps the session cookie off cross-site `POST`s, which
//! protects requests that *carry* a session. It cannot protect the request
//! that *creates* one: a page on another site that auto-submits a form to
//! `/login` signs the visitor in to an account of the attacker's choosing
//! (login CSRF). Browsers say where a request comes from: `Sec-Fetch-Site`
//! (Fetch Metadata, in every current browser) and, for older ones,
//! `Origin`. The guard reads them before anything else runs, so a refused
//! request costs no store call and reaches no handler.

use std::sync::Arc;

use http::{HeaderMap, Method, header};

/// Decides whether a request may change state: on by default in
/// [`SessionLayer`](crate::SessionLayer) (opt out with
/// [`SessionLayer::without_cross_site_guard`](crate::SessionLayer::without_cross_site_guard)).
///
/// Safe methods (`GET`, `HEAD`, `OPTIONS`, `TRACE`) always pass. Any other
/// request is refused with `403 Forbidden` when
///
/// 1. its `Sec-Fetch-Site` is `cross-site` (a page of another site made the
///    browser send it), unless its `Origin` is one of the allowed origins;
/// 2. or, without `Sec-Fetch-Site`, its `Origin` is present and is neither
///    the request's own (`Origin`'s host and port equal the `Host`
///    header) nor an allowed origin; `Origin: null` (a sandboxed or
///    privacy-sensitive context) counts as foreign.
///
/// Same-origin and same-site requests (`Sec-Fetch-Site: same-origin`,
/// `same-site`, `none` for what the user typed or bookmarked) pass, and so
/// do non-browser clients, which send neither header.
///
/// ```
/// use http::{Method, Request};
/// use session_tower::CrossSiteGuard;
///
/// let guard = CrossSiteGuard::default().allow_origin("https://accounts.example");
/// let forged = Request::post("/login")
///     .header("sec-fetch-site", "cross-site")
///     .header("origin", "https://evil.example")
///     .body(())?;
/// assert!(!guard.allows(forged.method(), forged.headers()));
/// let partner = Request::post("/login")
///     .header("sec-fetch-site", "cross-site")
///     .header("origin", "https://accounts.example")
///     .body(())?;
/// assert!(guard.allows(partner.method(), partner.headers()));
/// let script = Request::post("/login").body(())?; // curl, a server, a test
/// assert!(guard.allows(script.method(), script.headers()));
/// # Ok::<(), http::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrossSiteGuard {
    allowed: Arc<Vec<String>>,
}

impl CrossSiteGuard {
    /// Also allows requests from `origin` (`scheme://host[:port]`, as
    /// browsers send it in `Origin`; compared case-insensitively, without
    /// a trailing slash), for example a sign-in page on another domain.
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        let origin = origin.into();
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        Arc::make_mut(&mut self.allowed).push(origin);
        self
    }

    /// The origins allowed besides the request's own.
    pub fn allowed_origins(&self) -> &[String] {
        &self.allowed
    }

    /// Whether a request with `method` and `headers` may pass.
    pub fn allows(&self, method: &Method, headers: &HeaderMap) -> bool {
        if is_safe(method) {
            return true;
        }
        let origin = headers
            .get(header::ORIGIN)
            .map(|o| o.to_str().unwrap_or("null"));
        let allowed_origin = origin.is_some_and(|o| self.is_allowed(o));
        match headers.get("sec-fetch-site").map(|v| v.as_bytes()) {
            Some(b"cross-site") => allowed_origin,
            Some(_) => true,
            None => match origin {
                None => true,
                Some(origin) => allowed_origin || is_own(origin, headers),
            },
        }
    }

    fn is_allowed(&self, origin: &str) -> bool {
        self.allowed
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(origin))
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Whether `origin`'s host and port are the request's `Host`.
fn is_own(origin: &str, headers: &HeaderMap) -> bool {
    let Some(authority) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let default_port = if origin.starts_with("https://") {
        ":443"
    } else {
        ":80"
    };
    let bare = |a: &str| -> String {
        a.strip_suffix(default_port)
            .unwrap_or(a)
            .to_ascii_lowercase()
    };
    bare(authority) == bare(host)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn safe_methods_always_pass() {
        let guard = CrossSiteGuard::default();
        let forged = headers(&[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://e.example"),
        ]);
        for method in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
            assert!(guard.allows(&method, &forged), "{method}");
        }
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(!guard.allows(&method, &forged), "{method}");
        }
    }

    #[test]
    fn fetch_metadata_decides_when_present() {
        let guard = CrossSiteGuard::default();
        for site in ["same-origin", "same-site", "none"] {
            let h = headers(&[
                ("sec-fetch-site", site),
                ("origin", "https://other.example"),
            ]);
            assert!(guard.allows(&Method::POST, &h), "{site}");
        }
        let h = headers(&[("sec-fetch-site", "cross-site"), ("host", "app.example")]);
        assert!(!guard.allows(&Method::POST, &h));
    }

    #[test]
    fn without_fetch_metadata_the_origin_must_be_the_hosts_own_or_allowed() {
        let guard = CrossSiteGuard::default().allow_origin("https://Partner.example/");
        let own = headers(&[
            ("origin", "http://localhost:3000"),
            ("host", "localhost:3000"),
        ]);
        assert!(guard.allows(&Method::POST, &own));
        let own_default_port = headers(&[
            ("origin", "https://app.example"),
            ("host", "app.example:443"),
        ]);
        assert!(guard.allows(&Method::POST, &own_default_port));
        let other_port = headers(&[
            ("origin", "http://localhost:4000"),
            ("host", "localhost:3000"),
        ]);
        assert!(!guard.allows(&Method::POST, &other_port));
        let foreign = headers(&[
            ("origin", "http://evil.example"),
            ("host", "localhost:3000"),
        ]);
        assert!(!guard.allows(&Method::POST, &foreign));
        let opaque = headers(&[("origin", "null"), ("host", "localhost:3000")]);
        assert!(!guard.allows(&Method::POST, &opaque));
        let partner = headers(&[
            ("origin", "https://partner.example"),
            ("host", "app.example"),
        ]);
        assert!(guard.allows(&Method::POST, &partner));
        assert!(guard.allows(&Method::POST, &headers(&[("host", "app.example")])));
    }
}
