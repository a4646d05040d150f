//! `hostkit install --systemd`: HostKit as a system service, the way the .deb installs it.
//!
//! Writes the hardened unit (`hostkit.service`: `Type=notify`, `DynamicUser=`, its state in
//! `StateDirectory=`, `ProtectSystem=strict`, the SSH key as a `LoadCredential=`), a
//! commented `/etc/hostkit/hostkit.env` and an SSH key for the controller, each only where
//! missing but the unit (which is HostKit's own and follows the binary). `--root` writes into
//! a folder instead of `/` (a package's staging tree); without it, `--now` also reloads
//! systemd and starts the service.

use std::path::{Path, PathBuf};

use crate::serve::write_private_file;
use crate::{Error, Result};

/// The unit, with `@BIN@` for the binary's path.
const UNIT: &str = include_str!("hostkit.service");
/// The settings file the unit reads, all commented out.
const ENV: &str = include_str!("hostkit.env");

pub const UNIT_PATH: &str = "etc/systemd/system/hostkit.service";
pub const ENV_PATH: &str = "etc/hostkit/hostkit.env";
pub const KEY_PATH: &str = "etc/hostkit/ssh/id_ed25519";

#[derive(Clone, Debug)]
pub struct InstallOptions {
    /// `/`, or a staging folder.
    pub root: PathBuf,
    /// Where the binary is (or will be) on the target: the unit's `ExecStart=`.
    pub bin: PathBuf,
    /// Reload systemd, enable and start the service (only with `root` `/`).
    pub start: bool,
}

/// What an install did.
#[derive(Debug, Default)]
pub struct Installed {
    pub written: Vec<PathBuf>,
    /// Present already, left as they were.
    pub kept: Vec<PathBuf>,
    /// The controller's public key, for the hosts' `authorized_keys`.
    pub public_key: Option<String>,
    pub started: bool,
}

/// The unit for a binary at `bin`. Refuses a path systemd would read differently from the
/// file system: relative, or with whitespace, quotes, `%` specifiers or `$` expansions.
pub fn unit_file(bin: &Path) -> Result<String> {
    let text = bin.to_str().unwrap_or("");
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+".contains(c);
    if !bin.is_absolute() || text.is_empty() || !text.chars().all(plain) {
        return Err(Error::Config(format!(
            "--bin {}: the unit's ExecStart= needs an absolute path of letters, digits and / . _ - +",
            bin.display()
        )));
    }
    Ok(UNIT.replace("@BIN@", text))
}

pub fn systemd(opts: &InstallOptions) -> Result<Installed> {
    let mut done = Installed::default();
    let at = |rel: &str| opts.root.join(rel);
    let io = |path: &Path, e: std::io::Error| Error::Config(format!("{}: {e}", path.display()));

    let unit = at(UNIT_PATH);
    std::fs::create_dir_all(unit.parent().expect("has a parent")).map_err(|e| io(&unit, e))?;
    write_private_file(&unit, unit_file(&opts.bin)?.as_bytes(), 0o644).map_err(|e| io(&unit, e))?;
    done.written.push(unit);

    // Secrets may go in the env file: root only.
    let env = at(ENV_PATH);
    if env.exists() {
        done.kept.push(env);
    } else {
        write_private_file(&env, ENV.as_bytes(), 0o600).map_err(|e| io(&env, e))?;
        done.written.push(env);
    }

    let key = at(KEY_PATH);
    if key.exists() {
        done.kept.push(key.clone());
    } else {
        make_key(&key)?;
        done.written.push(key.clone());
    }
    done.public_key = std::fs::read_to_string(key.with_extension("pub"))
        .ok()
        .map(|k| k.trim().to_string());

    if opts.start {
        if opts.root != Path::new("/") {
            return Err(Error::Config(
                "--now starts the service on this machine: it needs --root / (the default)".into(),
            ));
        }
        systemctl(&["daemon-reload"])?;
        systemctl(&["enable", "--now", "hostkit.service"])?;
        done.started = true;
    }
    Ok(done)
}

/// An ed25519 key for the controller, by `ssh-keygen` (in a 0700 folder; the private half
/// 0600, root's: the service reads it as a credential).
fn make_key(key: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = key.parent().expect("has a parent");
    std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| Error::Config(format!("{}: {e}", dir.display())))?;
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "hostkit", "-f"])
        .arg(key)
        .output()
        .map_err(|e| {
            Error::Config(format!(
                "ssh-keygen: {e}; install openssh-client, or put a key at {}",
                key.display()
            ))
        })?;
    if !out.status.success() {
        return Err(Error::Config(format!(
            "ssh-keygen: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn systemctl(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("systemctl")
        .args(args)
        .output()
        .map_err(|e| Error::Config(format!("systemctl: {e}")))?;
    if !out.status.success() {
        return Err(Error::Config(format!(
            "systemctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_refuses_a_binary_path_systemd_would_read_differently() {
        for bad in [
            "hostkit",
            "/opt/my bin/hostkit",
            "/usr/bin/%n",
            "/usr/bin/$X",
            "/usr/bin/a\nExecStartPre=/bin/rm",
        ] {
            let e = unit_file(Path::new(bad)).unwrap_err().to_string();
            assert!(e.contains("absolute path"), "{bad:?}: {e}");
        }
        let unit = unit_file(Path::new("/usr/bin/hostkit")).unwrap();
        assert!(unit.contains("\nExecStart=/usr/bin/hostkit serve --no-client-config\n"));
        assert!(!unit.contains("@BIN@"));
    }

    /// Into a staging root: unit, env file (0600) and key (0600 in a 0700 folder); a second
    /// run keeps the env file and the key as they are.
    #[test]
    fn an_install_into_a_root_writes_once_and_keeps_what_is_there() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let opts = InstallOptions {
            root: root.path().to_path_buf(),
            bin: "/usr/bin/hostkit".into(),
            start: false,
        };
        let first = systemd(&opts).unwrap();
        assert_eq!(first.written.len(), 3, "{first:?}");
        let mode = |p: &str| {
            std::fs::metadata(root.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(UNIT_PATH), 0o644);
        assert_eq!(mode(ENV_PATH), 0o600);
        assert_eq!(mode(KEY_PATH), 0o600);
        assert_eq!(mode("etc/hostkit/ssh"), 0o700);
        assert!(
            first
                .public_key
                .as_deref()
                .unwrap()
                .starts_with("ssh-ed25519 ")
        );

        std::fs::write(root.path().join(ENV_PATH), "HOSTKIT_LISTEN=0.0.0.0:7443\n").unwrap();
        let key = std::fs::read(root.path().join(KEY_PATH)).unwrap();
        let again = systemd(&opts).unwrap();
        assert_eq!(again.written, vec![root.path().join(UNIT_PATH)]);
        assert_eq!(
            std::fs::read_to_string(root.path().join(ENV_PATH)).unwrap(),
            "HOSTKIT_LISTEN=0.0.0.0:7443\n"
        );
        assert_eq!(std::fs::read(root.path().join(KEY_PATH)).unwrap(), key);
        assert_eq!(again.public_key, first.public_key);

        let refused = systemd(&InstallOptions {
            start: true,
            ..opts
        })
        .unwrap_err();
        assert!(refused.to_string().contains("--root /"), "{refused}");
    }
}
