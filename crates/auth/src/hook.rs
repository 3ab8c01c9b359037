//! `[auth.http]`: ask an external service.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, Uri};
use serde::Serialize;
use tidewater_core::{AuthRequest, Credentials};

use crate::config::HttpHookConfig;
use crate::error::Result;
use crate::http::{HttpClient, parse_url, shown};
use crate::keys::Keys;

/// Most answers cached at once.
const CACHE_MAX: usize = 4096;

/// What the hook answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HookAnswer {
    Allowed,
    Refused(u16),
}

/// The JSON body of the hook's `POST`.
#[derive(Serialize)]
struct HookBody<'a> {
    user: Option<&'a str>,
    password: Option<&'a str>,
    token: Option<&'a str>,
    ip: Option<String>,
    action: &'static str,
    path: Option<&'a str>,
    protocol: &'a str,
    id: Option<&'a str>,
    query: Option<&'a str>,
}

#[derive(Debug)]
pub(crate) struct Hook {
    url: Uri,
    pub(crate) shown: String,
    timeout: Duration,
    cache_for: Duration,
    client: HttpClient,
    cache: Mutex<HashMap<[u8; 32], (SystemTime, HookAnswer)>>,
}

impl Hook {
    pub(crate) fn new(cfg: &HttpHookConfig, client: HttpClient) -> Result<Self> {
        let url = parse_url("auth.http.url", &cfg.url)?;
        if cfg.timeout_ms == 0 {
            return Err(crate::Error::config(
                "auth.http.timeout_ms",
                "must be more than 0",
            ));
        }
        Ok(Hook {
            shown: shown(&url),
            url,
            timeout: Duration::from_millis(cfg.timeout_ms),
            cache_for: Duration::from_millis(cfg.cache_ms),
            client,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Asks the hook (or its cached answer); `Err` when it could not be asked.
    pub(crate) async fn ask(
        &self,
        req: &AuthRequest,
        keys: &Keys,
        now: SystemTime,
    ) -> std::result::Result<HookAnswer, String> {
        let (user, password) = match &req.credentials {
            Credentials::UserPass { user, pass } => (Some(user.as_str()), Some(pass.as_str())),
            Credentials::Digest(d) => (Some(d.user.as_str()), None),
            Credentials::None | Credentials::Token(_) => (None, None),
        };
        let mut body = HookBody {
            user,
            password,
            token: req.token(),
            ip: req.peer.map(|p| p.ip().to_canonical().to_string()),
            action: req.action.as_str(),
            path: req.key.as_ref().map(|k| k.as_str()),
            protocol: req.protocol,
            id: None,
            query: req.query.as_deref(),
        };
        // Keyed by everything but the id; stored as a keyed hash, since the
        // material holds the password.
        let cache_id = (!self.cache_for.is_zero())
            .then(|| serde_json::to_vec(&body).map(|b| keys.cache_key(&[b"hook", &b])))
            .transpose()
            .map_err(|e| e.to_string())?;
        if let Some(id) = &cache_id {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((until, answer)) = cache.get(id)
                && now < *until
            {
                return Ok(*answer);
            }
        }
        body.id = req.id.as_deref();
        let json = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("tidewater/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(json)))
            .map_err(|e| e.to_string())?;
        let (status, _) = self.client.send(request, self.timeout, 0).await?;
        let answer = if status.is_success() {
            HookAnswer::Allowed
        } else {
            HookAnswer::Refused(status.as_u16())
        };
        if let Some(id) = cache_id {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= CACHE_MAX {
                cache.retain(|_, (until, _)| now < *until);
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
            }
            cache.insert(id, (now + self.cache_for, answer));
        }
        Ok(answer)
    }
}
