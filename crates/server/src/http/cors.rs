//! Which other origins' pages may use the server from a browser:
//! `[http] cors_origins` for the outputs (HLS, DASH, HTTP-FLV/TS, playback;
//! any origin by default, so a player page elsewhere works) and
//! `[http] api_cors_origins` for the API (none by default: the console is
//! served from the same origin).
//!
//! The output crates answer with `Access-Control-Allow-Origin: *`; this
//! layer narrows that to the configured origins (echoing the request's
//! `Origin` with `Vary: Origin`, or removing the header), and gives the API
//! its own policy, preflights included.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_MAX_AGE, ORIGIN, VARY,
};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The two policies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cors {
    /// Origins allowed to read the outputs (`*` = any).
    pub outputs: Vec<String>,
    /// Origins allowed to call the API (`*` = any; empty = none).
    pub api: Vec<String>,
}

impl Cors {
    fn allows(list: &[String], origin: &str) -> bool {
        list.iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }
}

/// Applies `cors` to every route of `router`.
pub fn apply(router: Router, cors: Cors) -> Router {
    router.layer(axum::middleware::from_fn_with_state(Arc::new(cors), layer))
}

async fn layer(State(cors): State<Arc<Cors>>, request: Request, next: Next) -> Response {
    let origin = request
        .headers()
        .get(ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned);
    let api = request.uri().path().starts_with("/api/");
    if api {
        let allowed = origin
            .as_deref()
            .filter(|o| Cors::allows(&cors.api, o))
            .and_then(|o| HeaderValue::from_str(o).ok());
        if request.method() == Method::OPTIONS && allowed.is_some() {
            let mut r = StatusCode::NO_CONTENT.into_response();
            let h = r.headers_mut();
            h.insert(
                ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
            );
            h.insert(
                ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type"),
            );
            h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
            allow(&mut r, allowed);
            return r;
        }
        let mut r = next.run(request).await;
        r.headers_mut().remove(ACCESS_CONTROL_ALLOW_ORIGIN);
        allow(&mut r, allowed);
        return r;
    }
    let mut r = next.run(request).await;
    if r.headers().contains_key(ACCESS_CONTROL_ALLOW_ORIGIN)
        && !cors.outputs.iter().any(|o| o == "*")
    {
        r.headers_mut().remove(ACCESS_CONTROL_ALLOW_ORIGIN);
        let allowed = origin
            .as_deref()
            .filter(|o| Cors::allows(&cors.outputs, o))
            .and_then(|o| HeaderValue::from_str(o).ok());
        allow(&mut r, allowed);
    }
    r
}

fn allow(r: &mut Response, origin: Option<HeaderValue>) {
    if let Some(origin) = origin {
        let h = r.headers_mut();
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.append(VARY, HeaderValue::from_static("origin"));
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    fn app(cors: Cors) -> Router {
        let output = || async {
            let mut r = "media".into_response();
            r.headers_mut()
                .insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            r
        };
        apply(
            Router::new()
                .route("/hls/x", get(output))
                .route("/api/v1/streams", get(|| async { "[]" })),
            cors,
        )
    }

    async fn ask(app: Router, method: Method, path: &str, origin: &str) -> Response {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header(ORIGIN, origin)
            .body(Body::empty())
            .expect("request");
        app.oneshot(request).await.expect("answer")
    }

    fn acao(r: &Response) -> Option<&str> {
        r.headers()
            .get(ACCESS_CONTROL_ALLOW_ORIGIN)
            .and_then(|v| v.to_str().ok())
    }

    #[tokio::test]
    async fn defaults_let_any_page_read_outputs_and_none_call_the_api() {
        let cors = Cors {
            outputs: vec!["*".into()],
            api: vec![],
        };
        let r = ask(
            app(cors.clone()),
            Method::GET,
            "/hls/x",
            "https://a.example",
        )
        .await;
        assert_eq!(acao(&r), Some("*"));
        let r = ask(
            app(cors.clone()),
            Method::GET,
            "/api/v1/streams",
            "https://a.example",
        )
        .await;
        assert_eq!(acao(&r), None);
        let r = ask(
            app(cors),
            Method::OPTIONS,
            "/api/v1/streams",
            "https://a.example",
        )
        .await;
        assert_ne!(
            r.status(),
            StatusCode::NO_CONTENT,
            "no preflight for a stranger"
        );
    }

    #[tokio::test]
    async fn listed_origins_are_echoed_and_others_get_nothing() {
        let cors = Cors {
            outputs: vec!["https://player.example".into()],
            api: vec!["https://admin.example".into()],
        };
        let r = ask(
            app(cors.clone()),
            Method::GET,
            "/hls/x",
            "https://player.example",
        )
        .await;
        assert_eq!(acao(&r), Some("https://player.example"));
        let r = ask(
            app(cors.clone()),
            Method::GET,
            "/hls/x",
            "https://evil.example",
        )
        .await;
        assert_eq!(acao(&r), None);
        let r = ask(
            app(cors.clone()),
            Method::GET,
            "/api/v1/streams",
            "https://admin.example",
        )
        .await;
        assert_eq!(acao(&r), Some("https://admin.example"));
        let r = ask(
            app(cors),
            Method::OPTIONS,
            "/api/v1/streams",
            "https://admin.example",
        )
        .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(acao(&r), Some("https://admin.example"));
    }
}
