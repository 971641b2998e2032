//! The config file as the pages see it: read afresh for every page (admins edit it too), with
//! its version for Save's check against concurrent edits.

use crate::config::edit::{self, SecretKind};
use crate::config::file::{self, FileVersion};
use crate::config::{AccountConfig, ConfigIssue, Loaded};

pub use crate::config::edit::SecretSource;

use super::Web;

pub struct CurrentFile {
    pub text: String,
    pub version: String,
    pub config: Result<Loaded, Vec<ConfigIssue>>,
}

pub fn current(web: &Web) -> CurrentFile {
    match file::read(&web.config_path) {
        Ok(file) => CurrentFile {
            config: crate::config::parse(&file.text),
            version: file.version.to_string(),
            text: file.text,
        },
        Err(e) => CurrentFile {
            text: String::new(),
            version: FileVersion::of(b"").to_string(),
            config: Err(vec![ConfigIssue {
                severity: crate::config::Severity::Error,
                key: "(file)".into(),
                line: 0,
                column: 0,
                message: e.to_string(),
            }]),
        },
    }
}

impl CurrentFile {
    pub fn account(&self, name: &str) -> Option<&AccountConfig> {
        self.config
            .as_ref()
            .ok()?
            .config
            .accounts
            .iter()
            .find(|a| a.name == name)
    }

    /// The `[tickets]` types and statuses the drop-downs offer.
    pub fn ticket_choices(&self) -> (Vec<String>, Vec<String>) {
        match self
            .config
            .as_ref()
            .ok()
            .and_then(|l| l.config.tickets.as_ref())
        {
            Some(t) => (t.types.clone(), t.statuses.clone()),
            None => (Vec::new(), Vec::new()),
        }
    }

    /// Where the password or OAuth client secret of account `name` comes from, as the file
    /// says (`None` for an account not in the file).
    pub fn secret_source(&self, name: &str, kind: SecretKind) -> SecretSource {
        edit::secret_source(&self.text, name, kind).unwrap_or(SecretSource::None)
    }
}
