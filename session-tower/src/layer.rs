//! The tower `Layer` and `Service`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, StatusCode, header};
use session_core::{CookieAction, SessionManager, Timestamp};
use tower_layer::Layer;
use tower_service::Service;

use crate::{CookieConfig, CrossSiteGuard, Session};

/// Adds a [`Session`] to every request and commits it after the inner
/// service has answered.
///
/// For each request the layer
///
/// 1. reads the session cookie (without any store call: the session loads
///    lazily on first use),
/// 2. puts a [`Session`] into the request's extensions (the axum extractor
///    takes it from there),
/// 3. calls the inner service,
/// 4. commits the session and writes `Set-Cookie` as the manager decides:
///    the id with `Max-Age` after a change or a sliding touch, an empty
///    value with `Max-Age=0` after logout, nothing when nothing changed.
///
/// Before all of that, a state-changing request that another site made
/// the browser send is answered with a bare `403 Forbidden`, without a
/// store call or the inner service ([`CrossSiteGuard`]; on by default,
/// configured with [`SessionLayer::with_cross_site_guard`], switched off
/// with [`SessionLayer::without_cross_site_guard`]).
///
/// A store error while committing turns the response into a bare
/// `500 Internal Server Error` with an empty body; the details go to
/// `tracing` only.
///
/// ```
/// use axum::{Router, routing::get};
/// use session_core::SessionManager;
/// use session_store_memory::MemoryStore;
/// use session_tower::{CookieConfig, Session, SessionLayer};
///
/// async fn count(session: Session) -> Result<String, session_tower::SessionError> {
///     let n = session.get::<u64>("n").await?.unwrap_or(0) + 1;
///     session.insert("n", n).await?;
///     Ok(format!("visit {n}"))
/// }
///
/// let manager = SessionManager::new(MemoryStore::default());
/// let app: Router = Router::new()
///     .route("/", get(count))
///     .layer(SessionLayer::new(manager).with_cookie(CookieConfig::default()));
/// ```
#[derive(Debug, Clone)]
pub struct SessionLayer {
    manager: SessionManager,
    cookie: Arc<CookieConfig>,
    guard: Option<CrossSiteGuard>,
}

impl SessionLayer {
    /// A layer over `manager` with the default [`CookieConfig`].
    pub fn new(manager: SessionManager) -> Self {
        Self {
            manager,
            cookie: Arc::new(CookieConfig::default()),
            guard: Some(CrossSiteGuard::default()),
        }
    }

    /// Sets the cross-site request guard (for example to allow another
    /// origin of yours).
    pub fn with_cross_site_guard(mut self, guard: CrossSiteGuard) -> Self {
        self.guard = Some(guard);
        self
    }

    /// Lets every request through, cross-site ones included: for apps
    /// that guard against cross-site requests otherwise (CSRF tokens, an
    /// earlier layer).
    pub fn without_cross_site_guard(mut self) -> Self {
        self.guard = None;
        self
    }

    /// Sets the cookie attributes.
    pub fn with_cookie(mut self, cookie: CookieConfig) -> Self {
        self.cookie = Arc::new(cookie);
        self
    }

    /// The manager.
    pub fn manager(&self) -> &SessionManager {
        &self.manager
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            manager: self.manager.clone(),
            cookie: Arc::clone(&self.cookie),
            guard: self.guard.clone(),
        }
    }
}

/// The service [`SessionLayer`] wraps around an inner service.
#[derive(Debug, Clone)]
pub struct SessionService<S> {
    inner: S,
    manager: SessionManager,
    cookie: Arc<CookieConfig>,
    guard: Option<CrossSiteGuard>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if let Some(guard) = &self.guard
            && !guard.allows(request.method(), request.headers())
        {
            tracing::debug!(
                method = %request.method(),
                uri = %request.uri(),
                "cross-site request refused; answering 403"
            );
            return Box::pin(async { Ok(forbidden()) });
        }
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let manager = self.manager.clone();
        let cookie = Arc::clone(&self.cookie);
        let session = Session::new(
            manager.load(cookie.find(request.headers())),
            manager.clone(),
        );
        request.extensions_mut().insert(session.clone());
        Box::pin(async move {
            let mut response = inner.call(request).await?;
            let header = match manager.commit(&session).await {
                Ok(CookieAction::Unchanged) => return Ok(response),
                Ok(CookieAction::Clear) => cookie.clear(),
                Ok(CookieAction::Set { value, expires_at }) => {
                    let secs = expires_at.duration_since(Timestamp::now()).as_secs();
                    cookie.set(value, i64::try_from(secs).unwrap_or(i64::MAX))
                }
                Err(error) => {
                    tracing::error!(%error, "session commit failed; answering 500");
                    return Ok(internal_error());
                }
            };
            match HeaderValue::try_from(header) {
                Ok(value) => {
                    response.headers_mut().append(header::SET_COOKIE, value);
                    // A response that sets a session cookie must not be
                    // cached by a shared cache and served to someone else.
                    response
                        .headers_mut()
                        .entry(header::CACHE_CONTROL)
                        .or_insert(HeaderValue::from_static("no-store"));
                    Ok(response)
                }
                Err(error) => {
                    tracing::error!(%error, "session cookie is not a valid header; answering 500");
                    Ok(internal_error())
                }
            }
        })
    }
}

/// A bare 403 with an empty body.
fn forbidden<B: Default>() -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = StatusCode::FORBIDDEN;
    response
}

/// A bare 500 with an empty body.
pub(crate) fn internal_error<B: Default>() -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}
