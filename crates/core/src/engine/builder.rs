//! Configuring an [`Engine`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::{Engine, EngineInner};
use crate::auth::{Authorizer, PermitAll};
use crate::bus::Emitter;
use crate::error::{Error, Result};
use crate::events::{NoopObserver, Observer};
use crate::policy::AppSpec;

/// Builds an [`Engine`].
pub struct EngineBuilder {
    apps: HashMap<String, AppSpec>,
    default_app: Option<AppSpec>,
    auth: Arc<dyn Authorizer>,
    observer: Arc<dyn Observer>,
    event_capacity: usize,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        EngineBuilder {
            apps: HashMap::new(),
            default_app: None,
            auth: Arc::new(PermitAll),
            observer: Arc::new(NoopObserver),
            event_capacity: 1024,
        }
    }
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("apps", &self.apps.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// Adds an application.
    pub fn app(mut self, name: impl Into<String>, spec: AppSpec) -> Self {
        self.apps.insert(name.into(), spec);
        self
    }

    /// The spec of applications not configured by name; without one, streams
    /// of unknown applications are refused.
    pub fn default_app(mut self, spec: AppSpec) -> Self {
        self.default_app = Some(spec);
        self
    }

    /// The authorizer asked on every publish and read (default: permit all).
    pub fn authorizer(mut self, auth: impl Authorizer) -> Self {
        self.auth = Arc::new(auth);
        self
    }

    /// The observer told of every lifecycle event.
    pub fn observer(mut self, observer: impl Observer) -> Self {
        self.observer = Arc::new(observer);
        self
    }

    /// How many lifecycle events a slow event subscriber may fall behind by.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity.max(1);
        self
    }

    /// Validates the configuration and builds the engine.
    pub fn build(self) -> Result<Engine> {
        for (name, spec) in &self.apps {
            crate::key::StreamKey::new(name, "x")
                .map_err(|e| Error::Config(format!("app {name:?}: {e}")))?;
            spec.validate()
                .map_err(|e| Error::Config(format!("app {name}: {e}")))?;
        }
        if let Some(spec) = &self.default_app {
            spec.validate()?;
        }
        if self.apps.is_empty() && self.default_app.is_none() {
            return Err(Error::Config("no application configured".into()));
        }
        let (events, _) = tokio::sync::broadcast::channel(self.event_capacity);
        Ok(Engine {
            inner: Arc::new(EngineInner {
                apps: self.apps,
                default_app: self.default_app,
                streams: Default::default(),
                emitter: Arc::new(Emitter {
                    events,
                    observer: self.observer,
                }),
                auth: self.auth,
                next_session: AtomicU64::new(0),
                listeners: Default::default(),
                players: Default::default(),
                on_demand: Default::default(),
            }),
        })
    }
}
