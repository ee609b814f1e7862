//! The headers every response of the demo carries (OWASP HTTP Headers,
//! Clickjacking Defense and Session Management cheat sheets).
//!
//! | header | value | why |
//! |---|---|---|
//! | `Cache-Control` | `no-store` | signed-in pages and forms stay out of every cache (browser history, shared proxies); a handler that sets its own (the stylesheet) keeps it |
//! | `Content-Security-Policy` | [`CONTENT_SECURITY_POLICY`] | no scripts at all, styles only from `/style.css`, forms post only to the demo, no `<base>`, and no framing (clickjacking) |
//! | `X-Content-Type-Options` | `nosniff` | a response is only ever what its `Content-Type` says |
//! | `Referrer-Policy` | `same-origin` | no URL of the demo leaks to other sites; not `no-referrer`, which would make browsers send `Origin: null` on the demo's own form posts, and the cross-site guard refuses those from browsers without Fetch Metadata |

use axum::http::{HeaderValue, header};
use axum::response::Response;

/// The demo's pages are plain HTML forms and one stylesheet: nothing else
/// may load, run, frame them or be posted to.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; \
form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the headers of the [module docs](self) to `response`.
pub(crate) async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}
