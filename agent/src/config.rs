//! The global options every command sees.

/// The notary's URL when neither `--notary` nor `NULLOS_NOTARY` gives one.
pub const DEFAULT_NOTARY: &str = "http://127.0.0.1:7878";
/// The environment variable naming the notary's URL.
pub const NOTARY_ENV: &str = "NULLOS_NOTARY";

/// Why the configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The notary URL is not an `http://` or `https://` URL with a host.
    #[error("notary URL '{0}' is not http://HOST[:PORT][/PATH] or https://...")]
    NotaryUrl(String),
}

/// The agent's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The notary's base URL, without a trailing '/' (used by the online commands).
    pub notary: String,
}

impl Config {
    /// Checks and keeps the notary URL.
    pub fn new(notary: &str) -> Result<Config, ConfigError> {
        let url = notary.trim().trim_end_matches('/');
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| ConfigError::NotaryUrl(notary.to_owned()))?;
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::NotaryUrl(notary.to_owned()));
        }
        Ok(Config {
            notary: url.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notary_urls() {
        assert_eq!(Config::new(DEFAULT_NOTARY).unwrap().notary, DEFAULT_NOTARY);
        assert_eq!(
            Config::new("https://notary.example/api/").unwrap().notary,
            "https://notary.example/api"
        );
        for bad in ["", "notary:7878", "ftp://x", "http://", "http:// x"] {
            assert!(Config::new(bad).is_err(), "{bad}");
        }
    }
}
