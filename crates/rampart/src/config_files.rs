//! The `[files]` section of the config: upload size and quota, the type allowlist, image
//! metadata stripping, malware scanning through clamd (on by default; off only when the file says
//! so, which is logged as a warning at every start) and download auditing.

use std::path::PathBuf;

use rampart_app::FilePolicy;
use rampart_core::files::{FileKind, TypePolicy, ALL_FILE_KINDS};
use rampart_core::limits;
use serde::Deserialize;

use crate::config::{bad, ranged, ConfigError};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFiles {
    pub bytes_max: Option<u64>,
    pub user_quota_bytes: Option<u64>,
    pub allowed_types: Option<Vec<String>>,
    pub strip_image_metadata: Option<bool>,
    pub image_pixels_max: Option<u64>,
    pub scanning: Option<bool>,
    pub clamd: Option<String>,
    pub audit_downloads: Option<bool>,
    pub uploads_at_once_max: Option<usize>,
    pub uploads_per_user_at_once_max: Option<usize>,
    pub upload_timeout_ms: Option<u64>,
    pub upload_idle_ms: Option<u64>,
    pub upload_rate_min_bytes_per_sec: Option<u64>,
    pub upload_rate_window_ms: Option<u64>,
}

/// Where clamd listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClamdAddress {
    Unix(PathBuf),
    Tcp(String),
}

/// The default clamd socket of Debian's clamav-daemon.
pub const CLAMD_DEFAULT: &str = "unix:/run/clamav/clamd.ctl";

/// The validated `[files]` section.
#[derive(Clone, Debug)]
pub struct FilesConfig {
    pub policy: FilePolicy,
    /// `None` when scanning is off.
    pub clamd: Option<ClamdAddress>,
    /// The longest an upload request may take.
    pub upload_timeout_ms: u64,
}

/// `unix:/path` or `tcp:host:port`.
pub fn parse_clamd(text: &str) -> Result<ClamdAddress, ConfigError> {
    const KEY: &str = "files.clamd";
    if let Some(path) = text.strip_prefix("unix:") {
        if !path.starts_with('/') {
            return Err(bad(KEY, "a unix socket must be an absolute path, as in unix:/run/clamav/clamd.ctl"));
        }
        return Ok(ClamdAddress::Unix(PathBuf::from(path)));
    }
    if let Some(address) = text.strip_prefix("tcp:") {
        let port_ok =
            address.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return Err(bad(KEY, "a TCP address must be host:port, as in tcp:127.0.0.1:3310"));
        }
        return Ok(ClamdAddress::Tcp(address.to_owned()));
    }
    Err(bad(KEY, "must be unix:/path/to/clamd.socket or tcp:host:port"))
}

fn allowed_types(list: Option<Vec<String>>) -> Result<TypePolicy, ConfigError> {
    const KEY: &str = "files.allowed_types";
    let Some(list) = list else {
        return Ok(TypePolicy::default());
    };
    let mut kinds: Vec<FileKind> = Vec::with_capacity(list.len());
    for name in &list {
        let kind = FileKind::from_media_type(name).ok_or_else(|| {
            let known: Vec<&str> = ALL_FILE_KINDS.iter().map(|k| k.media_type()).collect();
            bad(KEY, format!("`{name}` is not a type Rampart accepts; choose from: {}", known.join(", ")))
        })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(TypePolicy::new(kinds))
}

impl RawFiles {
    /// The section, validated, and warnings to log at start.
    pub fn validate(self) -> Result<(FilesConfig, Vec<String>), ConfigError> {
        let mut warnings = Vec::new();
        let scanning = self.scanning.unwrap_or(true);
        let clamd = match (scanning, self.clamd.as_deref()) {
            (true, text) => Some(parse_clamd(text.unwrap_or(CLAMD_DEFAULT))?),
            (false, Some(text)) => {
                parse_clamd(text)?;
                None
            }
            (false, None) => None,
        };
        if !scanning {
            warnings.push(
                "files.scanning is off: uploads are NOT scanned for malware. Turn it on with a clamd \
                 (files.clamd) in production"
                    .to_owned(),
            );
        }
        let policy = FilePolicy {
            bytes_max: ranged("files.bytes_max", self.bytes_max, limits::FILE_BYTES_MAX, 1, 64 << 30)?,
            quota_bytes: ranged(
                "files.user_quota_bytes",
                self.user_quota_bytes,
                limits::FILE_QUOTA_BYTES_PER_USER,
                0,
                u64::MAX >> 2,
            )?,
            types: allowed_types(self.allowed_types)?,
            strip_image_metadata: self.strip_image_metadata.unwrap_or(true),
            image_pixels_max: ranged(
                "files.image_pixels_max",
                self.image_pixels_max,
                limits::IMAGE_PIXELS_MAX,
                1,
                limits::IMAGE_ALLOC_BYTES_MAX / 4,
            )?,
            scanning,
            audit_downloads: self.audit_downloads.unwrap_or(false),
            uploads_at_once_max: ranged(
                "files.uploads_at_once_max",
                self.uploads_at_once_max,
                limits::FILE_UPLOADS_AT_ONCE_MAX,
                1,
                10_000,
            )?,
            uploads_per_user_at_once_max: ranged(
                "files.uploads_per_user_at_once_max",
                self.uploads_per_user_at_once_max,
                limits::FILE_UPLOADS_PER_USER_AT_ONCE_MAX,
                1,
                10_000,
            )?,
            upload_idle_ms: ranged(
                "files.upload_idle_ms",
                self.upload_idle_ms,
                limits::FILE_UPLOAD_IDLE_MS,
                100,
                600_000,
            )?,
            upload_rate_min_bytes_per_sec: ranged(
                "files.upload_rate_min_bytes_per_sec",
                self.upload_rate_min_bytes_per_sec,
                limits::FILE_UPLOAD_RATE_MIN_BYTES_PER_SEC,
                0,
                1 << 30,
            )?,
            upload_rate_window_ms: ranged(
                "files.upload_rate_window_ms",
                self.upload_rate_window_ms,
                limits::FILE_UPLOAD_RATE_WINDOW_MS,
                1_000,
                600_000,
            )?,
        };
        let upload_timeout_ms = ranged(
            "files.upload_timeout_ms",
            self.upload_timeout_ms,
            limits::FILE_UPLOAD_TIMEOUT_MS,
            1_000,
            24 * 3_600_000,
        )?;
        Ok((FilesConfig { policy, clamd, upload_timeout_ms }, warnings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(FilesConfig, Vec<String>), ConfigError> {
        toml::from_str::<RawFiles>(text).map_err(|e| bad("toml", e.to_string()))?.validate()
    }

    #[test]
    fn defaults_scan_through_the_debian_socket_and_refuse_svg() {
        let (config, warnings) = parse("").expect("defaults");
        assert!(warnings.is_empty());
        assert_eq!(config.clamd, Some(ClamdAddress::Unix(PathBuf::from("/run/clamav/clamd.ctl"))));
        assert!(config.policy.scanning && config.policy.strip_image_metadata && !config.policy.audit_downloads);
        assert_eq!(config.policy.bytes_max, limits::FILE_BYTES_MAX);
        assert!(!config.policy.types.allows(FileKind::Svg));
        assert!(config.policy.types.allows(FileKind::Pdf));
    }

    #[test]
    fn scanning_off_is_a_warning() {
        let (config, warnings) = parse("scanning = false").expect("valid");
        assert!(config.clamd.is_none() && !config.policy.scanning);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("NOT scanned"));
    }

    #[test]
    fn clamd_addresses_parse_and_bad_ones_name_the_key() {
        let (config, _) = parse("clamd = \"tcp:127.0.0.1:3310\"").expect("tcp");
        assert_eq!(config.clamd, Some(ClamdAddress::Tcp("127.0.0.1:3310".into())));
        for text in ["tcp:nohost", "unix:relative.sock", "http://x", "tcp::3310"] {
            let error = parse(&format!("clamd = \"{text}\"")).expect_err(text);
            assert_eq!(error.key, "files.clamd", "{text}");
        }
    }

    #[test]
    fn the_allowlist_takes_known_types_only() {
        let (config, _) = parse("allowed_types = [\"application/pdf\", \"image/svg+xml\"]").expect("valid");
        assert!(config.policy.types.allows(FileKind::Svg) && !config.policy.types.allows(FileKind::Png));
        for text in ["text/html", "application/x-msdownload", "application/javascript"] {
            let error = parse(&format!("allowed_types = [\"{text}\"]")).expect_err(text);
            assert_eq!(error.key, "files.allowed_types");
        }
        assert_eq!(parse("bytes_max = 0").expect_err("zero").key, "files.bytes_max");
        assert!(toml::from_str::<RawFiles>("max_bytes = 1").is_err());
    }
}
