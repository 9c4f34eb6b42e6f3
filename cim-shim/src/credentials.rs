//! Users for HTTP Basic authentication, and the admin credential the
//! default server generates on first start.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;

/// The user name of the generated credential.
pub const ADMIN_USER: &str = "admin";
/// The file (in the data directory) holding the generated credential as
/// one line `admin:<password>`, mode 0600.
pub const CREDENTIAL_FILE: &str = "cim-admin.credential";

/// One user allowed to call the server (`{ name = "...", password = "..." }`
/// in a config file).
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CimUser {
    pub name: String,
    pub password: String,
}

impl std::fmt::Debug for CimUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CimUser")
            .field("name", &self.name)
            .field("password", &"***")
            .finish()
    }
}

/// Reads the admin credential from `data_dir`, creating it (random
/// password, owner-only permissions) if it does not exist. Returns the user
/// and the file's path.
pub fn ensure_admin_credential(data_dir: &Path) -> io::Result<(CimUser, PathBuf)> {
    fs::create_dir_all(data_dir)?;
    let path = data_dir.join(CREDENTIAL_FILE);
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut f) => {
            let password = random_password()?;
            f.write_all(format!("{ADMIN_USER}:{password}\n").as_bytes())?;
            f.sync_all()?;
            tracing::info!(path = %path.display(), user = ADMIN_USER, "generated the CIM admin credential");
            Ok((
                CimUser {
                    name: ADMIN_USER.into(),
                    password,
                },
                path,
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let meta = fs::metadata(&path)?;
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "CIM credential file was readable by others; setting mode 0600");
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
            }
            let mut s = String::new();
            fs::File::open(&path)?.take(4096).read_to_string(&mut s)?;
            let line = s.lines().next().unwrap_or("");
            let (name, password) = line.split_once(':').ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: expected user:password", path.display()),
                )
            })?;
            if name.is_empty() || password.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: empty user or password", path.display()),
                ));
            }
            tracing::info!(path = %path.display(), user = name, "using the CIM admin credential");
            Ok((
                CimUser {
                    name: name.into(),
                    password: password.into(),
                },
                path,
            ))
        }
        Err(e) => Err(e),
    }
}

fn random_password() -> io::Result<String> {
    let mut buf = [0u8; 18];
    fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

/// Constant-time byte comparison (length is not hidden).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks an `Authorization` header value against `users`; returns the
/// user name on success.
pub fn check_basic<'a>(header: Option<&[u8]>, users: &'a [CimUser]) -> Option<&'a str> {
    let h = std::str::from_utf8(header?).ok()?.trim();
    let (scheme, rest) = h.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let s = std::str::from_utf8(&decoded).ok()?;
    let (name, password) = s.split_once(':')?;
    let mut found = None;
    for u in users {
        // Check every user so timing does not reveal which names exist.
        let ok = ct_eq(u.name.as_bytes(), name.as_bytes())
            & ct_eq(u.password.as_bytes(), password.as_bytes());
        if ok && found.is_none() {
            found = Some(u.name.as_str());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth() {
        let users = vec![CimUser {
            name: "admin".into(),
            password: "secret".into(),
        }];
        assert_eq!(
            check_basic(Some(b"Basic YWRtaW46c2VjcmV0"), &users),
            Some("admin")
        );
        assert_eq!(
            check_basic(Some(b"basic YWRtaW46c2VjcmV0"), &users),
            Some("admin")
        );
        assert_eq!(check_basic(Some(b"Basic YWRtaW46c2VjcmV1"), &users), None);
        assert_eq!(check_basic(Some(b"Basic !!!"), &users), None);
        assert_eq!(check_basic(Some(b"Digest x"), &users), None);
        assert_eq!(check_basic(None, &users), None);
    }

    #[test]
    fn credential_file_is_private_and_stable() {
        let dir = std::env::temp_dir().join(format!("ironlun-cim-cred-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (u1, p) = ensure_admin_credential(&dir).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (u2, _) = ensure_admin_credential(&dir).unwrap();
        assert_eq!(u1, u2);
        assert!(u1.password.len() >= 20);
        fs::remove_dir_all(&dir).unwrap();
    }
}
