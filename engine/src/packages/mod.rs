//! Semantic package names: a Service says `build-essential` and each package manager gets
//! the packages that mean that on its distribution. Names not in the table pass through;
//! `as:` skips the table for the one package a distribution calls something else.

mod install;
pub mod lock;
mod versions;

pub(crate) use install::{Install, install_script, parse_lock};
pub use versions::{is_plain_word, pins, version_matches};

/// One row: a semantic name and, per manager (`apt-get`, `dnf`, `apk`, `pacman`, the
/// commands HostKit detects), the packages it stands for.
type Row = (&'static str, [&'static [&'static str]; 4]);

/// Columns in [`MANAGERS`] order. A row exists only where some distribution's name differs
/// from the semantic one: `git` or `rsync` are the same everywhere and pass through.
#[rustfmt::skip]
const TABLE: &[Row] = &[
    // Toolchains and build helpers.
    ("build-essential", [&["build-essential"], &["gcc", "gcc-c++", "make"], &["build-base"], &["base-devel"]]),
    ("cxx-compiler", [&["g++"], &["gcc-c++"], &["g++"], &["gcc"]]),
    ("pkg-config", [&["pkg-config"], &["pkgconf-pkg-config"], &["pkgconf"], &["pkgconf"]]),
    ("golang", [&["golang"], &["golang"], &["go"], &["go"]]),
    ("xsltproc", [&["xsltproc"], &["libxslt"], &["libxslt"], &["libxslt"]]),
    // Headers and libraries to build against.
    ("openssl-dev", [&["libssl-dev"], &["openssl-devel"], &["openssl-dev"], &["openssl"]]),
    ("ncurses-dev", [&["libncurses-dev"], &["ncurses-devel"], &["ncurses-dev"], &["ncurses"]]),
    ("zlib-dev", [&["zlib1g-dev"], &["zlib-devel"], &["zlib-dev"], &["zlib"]]),
    ("readline-dev", [&["libreadline-dev"], &["readline-devel"], &["readline-dev"], &["readline"]]),
    ("ffi-dev", [&["libffi-dev"], &["libffi-devel"], &["libffi-dev"], &["libffi"]]),
    ("yaml-dev", [&["libyaml-dev"], &["libyaml-devel"], &["yaml-dev"], &["libyaml"]]),
    ("sqlite-dev", [&["libsqlite3-dev"], &["sqlite-devel"], &["sqlite-dev"], &["sqlite"]]),
    ("postgresql-dev", [&["libpq-dev"], &["libpq-devel"], &["libpq-dev"], &["postgresql-libs"]]),
    ("mysql-dev", [&["default-libmysqlclient-dev"], &["mariadb-connector-c-devel"], &["mariadb-connector-c-dev"], &["mariadb-libs"]]),
    ("xml2-dev", [&["libxml2-dev"], &["libxml2-devel"], &["libxml2-dev"], &["libxml2"]]),
    ("curl-dev", [&["libcurl4-openssl-dev"], &["libcurl-devel"], &["curl-dev"], &["curl"]]),
    ("bzip2-dev", [&["libbz2-dev"], &["bzip2-devel"], &["bzip2-dev"], &["bzip2"]]),
    ("lzma-dev", [&["liblzma-dev"], &["xz-devel"], &["xz-dev"], &["xz"]]),
    ("gdbm-dev", [&["libgdbm-dev"], &["gdbm-devel"], &["gdbm-dev"], &["gdbm"]]),
    ("uuid-dev", [&["uuid-dev"], &["libuuid-devel"], &["util-linux-dev"], &["util-linux-libs"]]),
    ("pcre2-dev", [&["libpcre2-dev"], &["pcre2-devel"], &["pcre2-dev"], &["pcre2"]]),
    ("python3-dev", [&["python3-dev"], &["python3-devel"], &["python3-dev"], &["python"]]),
    ("ruby-dev", [&["ruby-dev"], &["ruby-devel"], &["ruby-dev"], &["ruby"]]),
    // Runtimes and their tools.
    ("python3", [&["python3"], &["python3"], &["python3"], &["python"]]),
    ("python3-pip", [&["python3-pip"], &["python3-pip"], &["py3-pip"], &["python-pip"]]),
    ("python3-venv", [&["python3-venv"], &["python3"], &["python3"], &["python"]]),
    // Daemons.
    ("cron", [&["cron"], &["cronie"], &["dcron"], &["cronie"]]),
    ("ssh-server", [&["openssh-server"], &["openssh-server"], &["openssh-server"], &["openssh"]]),
    ("postgresql-server", [&["postgresql"], &["postgresql-server"], &["postgresql"], &["postgresql"]]),
    ("redis", [&["redis-server"], &["redis"], &["redis"], &["redis"]]),
    ("docker", [&["docker.io"], &["moby-engine"], &["docker"], &["docker"]]),
    // Clients and everyday tools.
    ("ssh-client", [&["openssh-client"], &["openssh-clients"], &["openssh-client"], &["openssh"]]),
    ("dns-utils", [&["bind9-dnsutils"], &["bind-utils"], &["bind-tools"], &["bind"]]),
    ("netcat", [&["netcat-openbsd"], &["nmap-ncat"], &["netcat-openbsd"], &["openbsd-netcat"]]),
    ("iproute2", [&["iproute2"], &["iproute"], &["iproute2"], &["iproute2"]]),
    ("gnupg", [&["gnupg"], &["gnupg2"], &["gnupg"], &["gnupg"]]),
    ("xz", [&["xz-utils"], &["xz"], &["xz"], &["xz"]]),
    ("procps", [&["procps"], &["procps-ng"], &["procps"], &["procps-ng"]]),
    ("sqlite3", [&["sqlite3"], &["sqlite"], &["sqlite"], &["sqlite"]]),
    ("postgresql-client", [&["postgresql-client"], &["postgresql"], &["postgresql-client"], &["postgresql"]]),
    ("mysql-client", [&["default-mysql-client"], &["mariadb"], &["mariadb-client"], &["mariadb-clients"]]),
    ("vim", [&["vim"], &["vim-enhanced"], &["vim"], &["vim"]]),
    ("imagemagick", [&["imagemagick"], &["ImageMagick"], &["imagemagick"], &["imagemagick"]]),
    ("locales", [&["locales"], &["glibc-langpack-en"], &["musl-locales"], &["glibc"]]),
    ("man", [&["man-db"], &["man-db"], &["mandoc"], &["man-db"]]),
];

/// The managers HostKit can drive, in the table's column order.
pub const MANAGERS: &[&str] = &["apt-get", "dnf", "apk", "pacman"];

/// The distribution packages that `semantic` stands for under `manager`.
pub fn names(semantic: &str, manager: &str) -> Vec<String> {
    let column = MANAGERS.iter().position(|m| *m == manager);
    TABLE
        .iter()
        .find(|(s, _)| *s == semantic)
        .zip(column)
        .map(|((_, per), c)| per[c].iter().map(|n| n.to_string()).collect())
        .unwrap_or_else(|| vec![semantic.to_string()])
}

/// The distribution packages a package resource installs: its `as:` name when it has one.
pub fn resolve(semantic: &str, system: Option<&str>, manager: &str) -> Vec<String> {
    match system {
        Some(real) => vec![real.to_string()],
        None => names(semantic, manager),
    }
}

/// Every semantic name the table knows (for docs and tests).
pub fn semantic_names() -> impl Iterator<Item = &'static str> {
    TABLE.iter().map(|(s, _)| *s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semantic_names_map_per_manager_and_others_pass_through() {
        assert_eq!(names("build-essential", "dnf"), ["gcc", "gcc-c++", "make"]);
        assert_eq!(names("tree", "pacman"), ["tree"]);
        assert_eq!(names("tree", "no-such-manager"), ["tree"]);
        assert_eq!(
            resolve("openssl-dev", Some("openssl3-dev"), "apk"),
            ["openssl3-dev"]
        );
    }

    #[test]
    fn apt_names_are_debians() {
        assert_eq!(names("openssl-dev", "apt-get"), ["libssl-dev"]);
        assert_eq!(names("zlib-dev", "apt-get"), ["zlib1g-dev"]);
        assert_eq!(names("dns-utils", "apt-get"), ["bind9-dnsutils"]);
        assert_eq!(names("postgresql-dev", "apt-get"), ["libpq-dev"]);
        assert_eq!(names("docker", "apt-get"), ["docker.io"]);
    }

    #[test]
    fn dnf_names_are_fedoras() {
        assert_eq!(names("openssl-dev", "dnf"), ["openssl-devel"]);
        assert_eq!(names("ssh-client", "dnf"), ["openssh-clients"]);
        assert_eq!(names("netcat", "dnf"), ["nmap-ncat"]);
        assert_eq!(names("cron", "dnf"), ["cronie"]);
        assert_eq!(names("vim", "dnf"), ["vim-enhanced"]);
    }

    #[test]
    fn apk_names_are_alpines() {
        assert_eq!(names("build-essential", "apk"), ["build-base"]);
        assert_eq!(names("python3-pip", "apk"), ["py3-pip"]);
        assert_eq!(names("dns-utils", "apk"), ["bind-tools"]);
        assert_eq!(names("golang", "apk"), ["go"]);
        assert_eq!(names("uuid-dev", "apk"), ["util-linux-dev"]);
    }

    #[test]
    fn pacman_names_are_arch_linuxs() {
        assert_eq!(names("build-essential", "pacman"), ["base-devel"]);
        assert_eq!(names("python3", "pacman"), ["python"]);
        assert_eq!(names("netcat", "pacman"), ["openbsd-netcat"]);
        assert_eq!(names("ssh-server", "pacman"), ["openssh"]);
        assert_eq!(names("mysql-client", "pacman"), ["mariadb-clients"]);
    }

    #[test]
    fn the_table_has_dozens_of_rows_each_once_with_a_plain_name_per_manager() {
        let all: Vec<&str> = semantic_names().collect();
        assert!(all.len() >= 40, "{} rows", all.len());
        let mut seen = std::collections::BTreeSet::new();
        for s in &all {
            assert!(seen.insert(*s), "{s} twice");
            for m in MANAGERS {
                let n = names(s, m);
                assert!(!n.is_empty(), "{s} under {m}");
                assert!(n.iter().all(|n| is_plain_word(n)), "{s} under {m}: {n:?}");
            }
        }
    }

    /// Every Debian name in the table is a package Debian has: asked of this machine's apt
    /// index (a Debian 12, as the test hosts are; `install-deps.sh` makes sure it is read).
    #[test]
    fn every_apt_name_is_in_debians_index() {
        let mut wanted: Vec<String> = semantic_names().flat_map(|s| names(s, "apt-get")).collect();
        wanted.sort();
        wanted.dedup();
        let out = std::process::Command::new("apt-cache")
            .arg("policy")
            .args(&wanted)
            .output()
            .expect("apt-cache runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut current = None;
        let mut found = std::collections::BTreeSet::new();
        for line in text.lines() {
            if !line.starts_with(' ') && line.ends_with(':') {
                current = Some(line.trim_end_matches(':').to_string());
            } else if let (Some(c), Some(v)) = (&current, line.trim().strip_prefix("Candidate: "))
                && v != "(none)"
            {
                found.insert(c.clone());
            }
        }
        let missing: Vec<&String> = wanted.iter().filter(|w| !found.contains(*w)).collect();
        assert!(missing.is_empty(), "not in apt's index: {missing:?}");
    }
}
