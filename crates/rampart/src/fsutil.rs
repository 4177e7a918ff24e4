//! Files and directories with the permissions our threat model needs: key material readable by
//! the server's user only, and a refusal to start when someone loosened them.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{anyhow, Context};

/// Permission bits for group and others.
const GROUP_OTHER_BITS: u32 = 0o077;

/// Creates `dir` (and parents) with mode 0700 if missing.
pub fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot set the mode of {}", dir.display()))?;
    }
    Ok(())
}

/// Refuses a directory, or any file in it, that group or others may access.
pub fn check_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mode = fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?.permissions().mode();
    if mode & GROUP_OTHER_BITS != 0 {
        return Err(anyhow!(
            "{} is accessible to group or others (mode {:o}); run `chmod 700 {}`",
            dir.display(),
            mode & 0o777,
            dir.display()
        ));
    }
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_file() && meta.permissions().mode() & GROUP_OTHER_BITS != 0 {
            return Err(anyhow!(
                "{} is readable by group or others; run `chmod 600 {}`",
                entry.path().display(),
                entry.path().display()
            ));
        }
    }
    Ok(())
}

/// Writes `bytes` to a new file readable and writable by the owner only (0600), replacing any
/// file of that name atomically.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let temp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("cannot write {}", temp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// `path` made absolute against the working directory, for a message that must say exactly where
/// something was looked for; as given when there is no working directory.
pub fn absolute(path: &Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}
