//! The cross-site request guard: refuses state-changing requests another
//! site made the browser send.
//!
//! `SameSite=Lax` keeps the session cookie off cross-site `POST`s, which
//! protects requests that *carry* a session. It cannot protect the request
//! that *creates* one: a page on another site that auto-submits a form to
//! `/login` signs the visitor in to an account of the attacker's choosing
//! (login CSRF). Nor does it stop a *sibling* of the app: a page on
//! `user-content.example.com` or on another port is "same-site" with
//! `app.example.com`, so the browser sends the cookie along. Browsers say
//! where a request comes from: `Sec-Fetch-Site` (Fetch Metadata, in every
//! current browser) and, for older ones, `Origin`. The guard reads them
//! before anything else runs, so a refused request costs no store call and
//! reaches no handler. It follows the OWASP Cross-Site Request Forgery
//! Prevention Cheat Sheet ("Fetch Metadata headers", "Verifying origin
//! with standard headers") and decides as Go 1.25's
//! `net/http.CrossOriginProtection` does, with the scheme compared too.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Request, header};

/// Decides whether a request may change state: on by default in
/// [`SessionLayer`](crate::SessionLayer) (opt out with
/// [`SessionLayer::without_cross_site_guard`](crate::SessionLayer::without_cross_site_guard)).
///
/// Safe methods (`GET`, `HEAD`, `OPTIONS`, `TRACE`) always pass; they
/// must not change state. Any other request passes only when
///
/// 1. its `Origin` is one of the [allowed origins](Self::allow_origin); or
/// 2. its `Sec-Fetch-Site` is `same-origin`, or `none` (the user typed or
///    bookmarked it). `same-site` is refused: a sibling subdomain or
///    another port of the same site is another origin, and may serve
///    content the app does not control; or
/// 3. it carries no `Sec-Fetch-Site` (a browser from before 2023, or no
///    browser at all) and either no `Origin` (curl, a server, a test) or
///    an `Origin` equal to the app's own: scheme, host and port.
///
/// The app's own origin is the [public origin](Self::with_public_origin)
/// when one is configured, which is what an app behind a reverse proxy
/// needs (the `Host` the app sees may be the proxy's upstream name).
/// Otherwise it is read from the request: the scheme and host of
/// `X-Forwarded-Proto` / `X-Forwarded-Host` when
/// [trusted](Self::trust_forwarded_headers), else the request's own
/// (the URI's scheme and authority under HTTP/2, the `Host` header under
/// HTTP/1.1, and the scheme `https` unless the layer's cookie is not
/// `Secure`, which means the app is served over plain HTTP).
///
/// A header sent twice (two `Origin`s, two `Sec-Fetch-Site`s), an
/// `Origin: null` (a sandboxed or privacy-sensitive context) or one that
/// is not a plain `scheme://host[:port]` counts as foreign.
///
/// ```
/// use http::Request;
/// use session_tower::CrossSiteGuard;
///
/// let guard = CrossSiteGuard::default().allow_origin("https://accounts.example")?;
/// let forged = Request::post("https://app.example/login")
///     .header("sec-fetch-site", "cross-site")
///     .header("origin", "https://evil.example")
///     .body(())?;
/// assert!(!guard.allows(&forged));
/// let sibling = Request::post("https://app.example/login")
///     .header("sec-fetch-site", "same-site")
///     .header("origin", "https://user-content.app.example")
///     .body(())?;
/// assert!(!guard.allows(&sibling));
/// let partner = Request::post("https://app.example/login")
///     .header("sec-fetch-site", "cross-site")
///     .header("origin", "https://accounts.example")
///     .body(())?;
/// assert!(guard.allows(&partner));
/// let script = Request::post("/login").body(())?; // curl, a server, a test
/// assert!(guard.allows(&script));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossSiteGuard {
    allowed: Arc<Vec<Origin>>,
    public: Option<Origin>,
    forwarded: bool,
    /// The scheme assumed for a request that does not say (HTTP/1.1):
    /// `https` unless the layer's cookie is not `Secure`.
    https: bool,
}

impl Default for CrossSiteGuard {
    fn default() -> Self {
        Self {
            allowed: Arc::default(),
            public: None,
            forwarded: false,
            https: true,
        }
    }
}

/// An origin given to [`CrossSiteGuard`] is not of the form
/// `scheme://host[:port]` with the scheme `http` or `https`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidOrigin(String);

impl std::fmt::Display for InvalidOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} is not an origin: expected http(s)://host[:port], without path, query, \
             fragment or user",
            self.0
        )
    }
}

impl std::error::Error for InvalidOrigin {}

impl CrossSiteGuard {
    /// Also allows requests from `origin` (`scheme://host[:port]`, as
    /// browsers send it in `Origin`; compared case-insensitively, the
    /// default port and a trailing slash ignored), for example a sign-in
    /// page on another domain.
    ///
    /// # Errors
    ///
    /// [`InvalidOrigin`] when `origin` is not of that form.
    pub fn allow_origin(mut self, origin: &str) -> Result<Self, InvalidOrigin> {
        let parsed = Origin::parse(origin.trim_end_matches('/').as_bytes())
            .ok_or_else(|| InvalidOrigin(origin.to_owned()))?;
        Arc::make_mut(&mut self.allowed).push(parsed);
        Ok(self)
    }

    /// Sets the app's own origin as browsers see it
    /// (`https://app.example`), for an app behind a reverse proxy or a
    /// load balancer: requests without Fetch Metadata must then carry
    /// exactly this `Origin`, and the `Host` header is not consulted.
    ///
    /// # Errors
    ///
    /// [`InvalidOrigin`] when `origin` is not of the form
    /// `scheme://host[:port]`.
    pub fn with_public_origin(mut self, origin: &str) -> Result<Self, InvalidOrigin> {
        self.public = Some(
            Origin::parse(origin.trim_end_matches('/').as_bytes())
                .ok_or_else(|| InvalidOrigin(origin.to_owned()))?,
        );
        Ok(self)
    }

    /// Takes the app's own scheme and host from `X-Forwarded-Proto` and
    /// `X-Forwarded-Host` (the last value of each, the one the nearest
    /// proxy added), when no public origin is configured.
    ///
    /// **Only behind a proxy that sets both on every request**, replacing
    /// whatever the client sent: otherwise a client chooses what the app
    /// takes for its own origin. A configured
    /// [public origin](Self::with_public_origin) needs no such trust and
    /// is the better choice when the app has one address.
    pub fn trust_forwarded_headers(mut self) -> Self {
        self.forwarded = true;
        self
    }

    /// Sets the scheme assumed for requests that do not carry one
    /// (HTTP/1.1 requests name only the host): `https` when `true` (the
    /// default). [`SessionLayer`](crate::SessionLayer) sets it from the
    /// cookie's `Secure` attribute.
    pub fn assume_https(mut self, https: bool) -> Self {
        self.https = https;
        self
    }

    /// The origins allowed besides the app's own, as
    /// `scheme://host[:port]` (lowercase, default port left out).
    pub fn allowed_origins(&self) -> Vec<String> {
        self.allowed.iter().map(Origin::to_string).collect()
    }

    /// Whether `request` may pass (its method, URI and headers; the body
    /// is not read).
    pub fn allows<B>(&self, request: &Request<B>) -> bool {
        if is_safe(request.method()) {
            return true;
        }
        let headers = request.headers();
        let origin = single(headers, header::ORIGIN);
        if let Single::One(value) = origin
            && Origin::parse(value.as_bytes()).is_some_and(|o| self.allowed.contains(&o))
        {
            return true;
        }
        match single(headers, "sec-fetch-site") {
            Single::One(site) => matches!(site.as_bytes(), b"same-origin" | b"none"),
            Single::Many => false,
            Single::None => match origin {
                Single::None => true,
                Single::Many => false,
                Single::One(value) => {
                    Origin::parse(value.as_bytes()).is_some_and(|o| self.is_own(&o, request))
                }
            },
        }
    }

    /// Whether `origin` is the app's own, for `request`.
    fn is_own<B>(&self, origin: &Origin, request: &Request<B>) -> bool {
        if let Some(public) = &self.public {
            return origin == public;
        }
        let headers = request.headers();
        let forwarded = |name: &'static str| -> Option<&[u8]> {
            if !self.forwarded {
                return None;
            }
            let value = headers.get_all(name).iter().next_back()?.as_bytes();
            let last = value.rsplit(|b| *b == b',').next()?;
            Some(last.trim_ascii())
        };
        let https = match forwarded("x-forwarded-proto") {
            Some(proto) => proto.eq_ignore_ascii_case(b"https"),
            None => match request.uri().scheme_str() {
                Some(scheme) => scheme.eq_ignore_ascii_case("https"),
                None => self.https,
            },
        };
        let authority = forwarded("x-forwarded-host")
            .or_else(|| request.uri().authority().map(|a| a.as_str().as_bytes()))
            .or_else(|| match single(headers, header::HOST) {
                Single::One(host) => Some(host.as_bytes()),
                Single::None | Single::Many => None,
            });
        authority
            .and_then(|authority| Origin::from_parts(https, authority))
            .is_some_and(|own| own == *origin)
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// A header that should appear at most once.
enum Single<'a> {
    None,
    One(&'a HeaderValue),
    Many,
}

fn single<K: http::header::AsHeaderName>(headers: &HeaderMap, name: K) -> Single<'_> {
    let mut values = headers.get_all(name).into_iter();
    match (values.next(), values.next()) {
        (None, _) => Single::None,
        (Some(value), None) => Single::One(value),
        (Some(_), Some(_)) => Single::Many,
    }
}

/// A web origin: scheme, host (lowercase) and port (`None` for the
/// scheme's default).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    https: bool,
    host: String,
    port: Option<u16>,
}

impl Origin {
    /// Parses `scheme://host[:port]` (an `Origin` header's value).
    fn parse(text: &[u8]) -> Option<Self> {
        let (https, authority) = if let Some(rest) = strip_prefix_ci(text, b"https://") {
            (true, rest)
        } else {
            (false, strip_prefix_ci(text, b"http://")?)
        };
        Self::from_parts(https, authority)
    }

    /// The origin of `authority` (`host[:port]`, IPv6 hosts bracketed)
    /// under the scheme.
    fn from_parts(https: bool, authority: &[u8]) -> Option<Self> {
        let (host, port) = match authority.strip_prefix(b"[") {
            Some(v6) => {
                let end = v6.iter().position(|b| *b == b']')?;
                let (inside, rest) = v6.split_at(end);
                let host = &authority[..inside.len() + 2];
                (host, rest.get(1..)?)
            }
            None => match authority.iter().position(|b| *b == b':') {
                Some(colon) => (&authority[..colon], &authority[colon..]),
                None => (authority, &b""[..]),
            },
        };
        let port = match port {
            b"" => None,
            [b':', digits @ ..] if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => {
                Some(std::str::from_utf8(digits).ok()?.parse::<u16>().ok()?)
            }
            _ => return None,
        };
        let valid = |b: &u8| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'[' | b']' | b':')
        };
        if host.is_empty() || !host.iter().all(valid) {
            return None;
        }
        let default = if https { 443 } else { 80 };
        Some(Self {
            https,
            host: String::from_utf8(host.to_ascii_lowercase()).ok()?,
            port: port.filter(|p| *p != default),
        })
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        match self.port {
            Some(port) => write!(f, "{scheme}://{}:{port}", self.host),
            None => write!(f, "{scheme}://{}", self.host),
        }
    }
}

fn strip_prefix_ci<'a>(text: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use http::Request;

    use super::*;

    fn post(uri: &str, pairs: &[(&'static str, &'static str)]) -> Request<()> {
        let mut builder = Request::post(uri);
        for (name, value) in pairs {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap_or_default()
    }

    #[test]
    fn safe_methods_always_pass() {
        let guard = CrossSiteGuard::default();
        for method in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
            let mut request = post(
                "/",
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "https://e.example"),
                ],
            );
            *request.method_mut() = method.clone();
            assert!(guard.allows(&request), "{method}");
        }
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            let mut request = post("/", &[("sec-fetch-site", "cross-site")]);
            *request.method_mut() = method.clone();
            assert!(!guard.allows(&request), "{method}");
        }
    }

    #[test]
    fn fetch_metadata_decides_when_present_and_same_site_is_refused() {
        let guard = CrossSiteGuard::default();
        for site in ["same-origin", "none"] {
            let request = post("/", &[("sec-fetch-site", site), ("host", "app.example")]);
            assert!(guard.allows(&request), "{site}");
        }
        for site in ["same-site", "cross-site", "SAME-ORIGIN", "bogus", ""] {
            let request = post(
                "/",
                &[
                    ("sec-fetch-site", site),
                    ("origin", "https://app.example"),
                    ("host", "app.example"),
                ],
            );
            assert!(!guard.allows(&request), "{site:?}");
        }
        // Sent twice: foreign, whatever the values.
        let twice = post(
            "/",
            &[
                ("sec-fetch-site", "same-origin"),
                ("sec-fetch-site", "same-origin"),
            ],
        );
        assert!(!guard.allows(&twice));
    }

    #[test]
    fn without_fetch_metadata_the_origin_must_be_the_apps_scheme_host_and_port() {
        let guard = CrossSiteGuard::default();
        let own = |origin: &'static str, host: &'static str| {
            guard.allows(&post("/", &[("origin", origin), ("host", host)]))
        };
        assert!(own("https://app.example", "app.example"));
        assert!(own("https://App.Example:443", "app.example"));
        assert!(own("https://app.example", "app.example:443"));
        // Plain HTTP posting to an HTTPS app (the cookie is Secure).
        assert!(!own("http://app.example", "app.example"));
        assert!(!own("https://app.example:8443", "app.example"));
        assert!(!own("https://evil.example", "app.example"));
        assert!(!own("https://app.example.evil.example", "app.example"));
        assert!(!own("null", "app.example"));
        assert!(!own("https://app.example/path", "app.example"));
        assert!(!own("https://user@app.example", "app.example"));
        assert!(!own("ftp://app.example", "app.example"));
        // No Origin, no Fetch Metadata: not a browser.
        assert!(guard.allows(&post("/", &[("host", "app.example")])));
        // Two Origins: foreign.
        let twice = post(
            "/",
            &[
                ("origin", "https://app.example"),
                ("origin", "https://app.example"),
                ("host", "app.example"),
            ],
        );
        assert!(!guard.allows(&twice));
        // A plain-HTTP app (cookie not Secure) has an http origin.
        let http = CrossSiteGuard::default().assume_https(false);
        let local = post(
            "/",
            &[
                ("origin", "http://localhost:3000"),
                ("host", "localhost:3000"),
            ],
        );
        assert!(http.allows(&local));
        let other_port = post(
            "/",
            &[
                ("origin", "http://localhost:4000"),
                ("host", "localhost:3000"),
            ],
        );
        assert!(!http.allows(&other_port));
        // IPv6.
        let v6 = post(
            "/",
            &[("origin", "http://[::1]:3000"), ("host", "[::1]:3000")],
        );
        assert!(http.allows(&v6));
        // The URI's scheme and authority, when the request has them (HTTP/2).
        let h2 = post(
            "https://app.example/login",
            &[("origin", "https://app.example")],
        );
        assert!(http.allows(&h2));
    }

    #[test]
    fn a_public_origin_replaces_the_host_header() -> Result<(), InvalidOrigin> {
        let guard = CrossSiteGuard::default().with_public_origin("https://app.example/")?;
        let behind_proxy = post(
            "/",
            &[
                ("origin", "https://app.example"),
                ("host", "127.0.0.1:8080"),
            ],
        );
        assert!(guard.allows(&behind_proxy));
        // A request whose Host names the attacker's origin (DNS rebinding,
        // a misrouted proxy) is still foreign.
        let rebound = post(
            "/",
            &[("origin", "https://evil.example"), ("host", "evil.example")],
        );
        assert!(!guard.allows(&rebound));
        Ok(())
    }

    #[test]
    fn forwarded_headers_count_only_when_trusted() {
        let pairs = [
            ("origin", "https://app.example"),
            ("host", "backend:8080"),
            ("x-forwarded-host", "app.example"),
            ("x-forwarded-proto", "https"),
        ];
        assert!(!CrossSiteGuard::default().allows(&post("/", &pairs)));
        let trusting = CrossSiteGuard::default().trust_forwarded_headers();
        assert!(trusting.allows(&post("/", &pairs)));
        // The last value is the nearest proxy's.
        let appended = post(
            "/",
            &[
                ("origin", "https://app.example"),
                ("x-forwarded-host", "evil.example, app.example"),
                ("x-forwarded-proto", "http, https"),
            ],
        );
        assert!(trusting.allows(&appended));
        let plain = post(
            "/",
            &[
                ("origin", "https://app.example"),
                ("x-forwarded-host", "app.example"),
                ("x-forwarded-proto", "http"),
            ],
        );
        assert!(!trusting.allows(&plain));
    }

    #[test]
    fn allowed_origins_pass_and_bad_ones_are_an_error() -> Result<(), InvalidOrigin> {
        let guard = CrossSiteGuard::default().allow_origin("https://Partner.example/")?;
        assert_eq!(guard.allowed_origins(), ["https://partner.example"]);
        for site in ["cross-site", "same-site"] {
            let partner = post(
                "/",
                &[
                    ("sec-fetch-site", site),
                    ("origin", "https://partner.example:443"),
                ],
            );
            assert!(guard.allows(&partner), "{site}");
        }
        let plain = post(
            "/",
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "http://partner.example"),
            ],
        );
        assert!(!guard.allows(&plain));
        for bad in [
            "partner.example",
            "https://",
            "https://a b",
            "https://x/y",
            "null",
        ] {
            assert!(
                CrossSiteGuard::default().allow_origin(bad).is_err(),
                "{bad}"
            );
            assert!(
                CrossSiteGuard::default().with_public_origin(bad).is_err(),
                "{bad}"
            );
        }
        Ok(())
    }
}
