//! `[web]`: the web console (`GET /`) and the player pages
//! (`GET /watch/{app}/{stream}`) on the HTTP port; see
//! [`crate::http::console`].

use serde::Deserialize;

use super::setting_error;
use crate::error::Result;

/// `[web]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSection {
    /// Whether to serve the console and the player pages (default true).
    pub enabled: bool,
    /// Where the player pages load `hls.min.js` and `dash.all.min.js` from
    /// when this build has them not embedded (a build without
    /// `tests/web/node_modules`): a base URL such as
    /// `https://static.example/players/`, ending in `/` (default unset: such
    /// a build's player pages say the player is missing). Ignored when the
    /// build embeds them.
    pub player_scripts_url: Option<String>,
}

impl Default for WebSection {
    fn default() -> Self {
        WebSection {
            enabled: true,
            player_scripts_url: None,
        }
    }
}

impl WebSection {
    /// Checks `player_scripts_url`: an `http://` or `https://` URL ending in
    /// `/`, or a path starting with `/`, with nothing a page would have to
    /// escape.
    pub(super) fn check(&self) -> Result<()> {
        let Some(url) = &self.player_scripts_url else {
            return Ok(());
        };
        let shaped =
            (url.starts_with("http://") || url.starts_with("https://") || url.starts_with('/'))
                && url.ends_with('/');
        let plain = url
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '<' | '>' | '\\' | '`'));
        if shaped && plain {
            Ok(())
        } else {
            Err(setting_error(
                "web.player_scripts_url".into(),
                format!(
                    "invalid value {url:?}: must be an http:// or https:// URL (or a path from /) ending in /, without quotes, spaces or angle brackets"
                ),
            ))
        }
    }
}
