//! The key-encryption keyring: versioned KEKs, one file each (`kek-<version>.key`, mode 0600) in
//! `key_dir` (mode 0700), never in the data directory or the database. A KEK only wraps data keys.
//! The database keeps each version's key check value, so a wrong key is detected at start instead
//! of by decrypting garbage. Reading, creating and removing these files is this crate's only I/O.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::envelope::{Aad, DataKey, OpenError, SymmetricKey, KEY_BYTES};

/// Bytes of the key check value kept in the database for each KEK version.
pub const KEY_CHECK_VALUE_BYTES: usize = 16;
/// A key file is one line of base64; anything much longer is not one.
const KEY_FILE_BYTES_MAX: u64 = 256;
const KEY_FILE_PREFIX: &str = "kek-";
const KEY_FILE_SUFFIX: &str = ".key";
/// Permission bits that let anyone but the owner in.
const GROUP_OTHER_BITS: u32 = 0o077;

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is readable by group or others (mode {mode:o}); run: chmod {fix} {path}")]
    Permissions { path: PathBuf, mode: u32, fix: &'static str },
    #[error("{path} is not a regular file (a symbolic link or a directory is refused)")]
    NotRegularFile { path: PathBuf },
    #[error("{path} does not hold a key (one line of base64 encoding 32 bytes)")]
    BadKeyFile { path: PathBuf },
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> KeyringError + '_ {
    move |source| KeyringError::Io { path: path.to_owned(), source }
}

/// One version of the key-encryption key.
pub struct Kek {
    version: u32,
    key: SymmetricKey,
}

impl Kek {
    pub fn generate(version: u32) -> Self {
        Kek { version, key: SymmetricKey::generate() }
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// HMAC-SHA256 of a fixed label under the key, truncated: tells whether a key file matches
    /// the database without revealing anything about the key.
    pub fn check_value(&self) -> [u8; KEY_CHECK_VALUE_BYTES] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.expose()).expect("HMAC takes any key length");
        mac.update(b"rampart key check value v1");
        let digest = mac.finalize().into_bytes();
        let mut out = [0u8; KEY_CHECK_VALUE_BYTES];
        out.copy_from_slice(&digest[..KEY_CHECK_VALUE_BYTES]);
        out
    }

    /// Wraps a data key; `binding` names the data key (its id, channel and epoch).
    pub fn wrap(&self, data_key: &DataKey, binding: &Aad) -> Vec<u8> {
        self.key.seal(binding, data_key.expose())
    }

    pub fn unwrap(&self, wrapped: &[u8], binding: &Aad) -> Result<DataKey, OpenError> {
        let bytes = self.key.open(binding, wrapped)?;
        SymmetricKey::from_bytes(&bytes).ok_or(OpenError::Malformed)
    }
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kek").field("version", &self.version).field("key", &"[redacted]").finish()
    }
}

/// The KEK versions found in `key_dir`.
#[derive(Debug, Default, Clone)]
pub struct Keyring {
    keks: BTreeMap<u32, Arc<Kek>>,
}

impl Keyring {
    /// The path of a version's key file.
    pub fn key_file(dir: &Path, version: u32) -> PathBuf {
        dir.join(format!("{KEY_FILE_PREFIX}{version}{KEY_FILE_SUFFIX}"))
    }

    /// Reads every `kek-<version>.key` in `dir`, refusing a directory or key file that group or
    /// others can read, and a key file that is not a regular file.
    pub fn load(dir: &Path) -> Result<Self, KeyringError> {
        check_private(dir, true)?;
        let mut keks = BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(io_error(dir))? {
            let entry = entry.map_err(io_error(dir))?;
            let name = entry.file_name();
            let Some(version) = name.to_str().and_then(parse_key_file_name) else {
                continue;
            };
            let path = entry.path();
            check_private(&path, false)?;
            keks.insert(version, Arc::new(read_key_file(&path, version)?));
        }
        Ok(Keyring { keks })
    }

    pub fn get(&self, version: u32) -> Option<Arc<Kek>> {
        self.keks.get(&version).cloned()
    }

    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.keks.keys().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.keks.is_empty()
    }

    /// Makes a new KEK version and writes its file (mode 0600, never over an existing file).
    pub fn create(dir: &Path, version: u32) -> Result<Kek, KeyringError> {
        let kek = Kek::generate(version);
        let path = Self::key_file(dir, version);
        let line = Zeroizing::new(format!("{}\n", STANDARD.encode(kek.key.expose())));
        let mut file =
            fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(io_error(&path))?;
        file.write_all(line.as_bytes()).map_err(io_error(&path))?;
        file.sync_all().map_err(io_error(&path))?;
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_error(dir))?;
        Ok(kek)
    }

    /// Deletes a retired version's file. Missing already is fine.
    pub fn remove(dir: &Path, version: u32) -> Result<(), KeyringError> {
        let path = Self::key_file(dir, version);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(KeyringError::Io { path, source: error }),
        }
    }
}

fn parse_key_file_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix(KEY_FILE_PREFIX)?.strip_suffix(KEY_FILE_SUFFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

pub(crate) fn check_private(path: &Path, is_dir: bool) -> Result<(), KeyringError> {
    let meta = fs::symlink_metadata(path).map_err(io_error(path))?;
    let right_kind = if is_dir { meta.is_dir() } else { meta.is_file() };
    if !right_kind {
        return Err(KeyringError::NotRegularFile { path: path.to_owned() });
    }
    let mode = meta.mode() & 0o7777;
    if mode & GROUP_OTHER_BITS != 0 {
        return Err(KeyringError::Permissions { path: path.to_owned(), mode, fix: if is_dir { "700" } else { "600" } });
    }
    Ok(())
}

fn read_key_file(path: &Path, version: u32) -> Result<Kek, KeyringError> {
    let bad = || KeyringError::BadKeyFile { path: path.to_owned() };
    let file = fs::File::open(path).map_err(io_error(path))?;
    if file.metadata().map_err(io_error(path))?.len() > KEY_FILE_BYTES_MAX {
        return Err(bad());
    }
    let text = Zeroizing::new(fs::read_to_string(path).map_err(io_error(path))?);
    let bytes = Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| bad())?);
    if bytes.len() != KEY_BYTES {
        return Err(bad());
    }
    let key = SymmetricKey::from_bytes(&bytes).ok_or_else(bad)?;
    Ok(Kek { version, key })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn private_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
        dir
    }

    #[test]
    fn created_keys_load_back_with_the_same_check_value() {
        let dir = private_dir();
        let one = Keyring::create(dir.path(), 1).expect("create");
        let two = Keyring::create(dir.path(), 2).expect("create");
        assert_ne!(one.check_value(), two.check_value());
        let ring = Keyring::load(dir.path()).expect("load");
        assert_eq!(ring.versions().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(ring.get(1).expect("v1").check_value(), one.check_value());
        let mode = fs::metadata(Keyring::key_file(dir.path(), 1)).expect("meta").mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn an_existing_key_file_is_never_overwritten() {
        let dir = private_dir();
        Keyring::create(dir.path(), 1).expect("create");
        assert!(matches!(Keyring::create(dir.path(), 1), Err(KeyringError::Io { .. })));
    }

    #[test]
    fn a_key_file_readable_by_others_is_refused() {
        let dir = private_dir();
        Keyring::create(dir.path(), 1).expect("create");
        let path = Keyring::key_file(dir.path(), 1);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let error = Keyring::load(dir.path()).expect_err("refused");
        assert!(error.to_string().contains("chmod 600"), "{error}");
    }

    #[test]
    fn a_key_dir_readable_by_others_is_refused() {
        let dir = private_dir();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o750)).expect("chmod");
        let error = Keyring::load(dir.path()).expect_err("refused");
        assert!(error.to_string().contains("chmod 700"), "{error}");
    }

    #[test]
    fn a_damaged_key_file_is_refused() {
        let dir = private_dir();
        let path = Keyring::key_file(dir.path(), 3);
        fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).expect("file");
        fs::write(&path, "not base64!\n").expect("write");
        assert!(matches!(Keyring::load(dir.path()), Err(KeyringError::BadKeyFile { .. })));
    }

    #[test]
    fn wrapped_data_keys_open_only_with_their_kek_and_binding() {
        let kek = Kek::generate(1);
        let data_key = DataKey::generate();
        let binding = Aad::new("data key", &[b"channel", b"key-1"]);
        let wrapped = kek.wrap(&data_key, &binding);
        let unwrapped = kek.unwrap(&wrapped, &binding).expect("unwraps");
        assert_eq!(unwrapped.expose(), data_key.expose());
        assert!(Kek::generate(1).unwrap(&wrapped, &binding).is_err());
        assert!(kek.unwrap(&wrapped, &Aad::new("data key", &[b"channel", b"key-2"])).is_err());
    }

    #[test]
    fn only_canonical_key_file_names_count() {
        assert_eq!(parse_key_file_name("kek-12.key"), Some(12));
        for name in ["kek-012.key", "kek-.key", "kek-1.key.bak", "kek-x.key", "tls-key.pem"] {
            assert_eq!(parse_key_file_name(name), None, "{name}");
        }
    }
}
