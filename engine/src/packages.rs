//! Semantic package names: a Service says `build-essential` and each package manager gets
//! the packages that mean that on its distribution. Names not in the table pass through.

/// `(semantic name, [(manager, packages)])`. Managers are the commands HostKit detects:
/// `apt-get`, `dnf`, `apk`, `pacman`.
/// One row: a semantic name and, per manager, the packages it stands for.
type Row = (
    &'static str,
    &'static [(&'static str, &'static [&'static str])],
);

const TABLE: &[Row] = &[
    (
        "build-essential",
        &[
            ("apt-get", &["build-essential"]),
            ("dnf", &["gcc", "gcc-c++", "make"]),
            ("apk", &["build-base"]),
            ("pacman", &["base-devel"]),
        ],
    ),
    (
        "openssl-dev",
        &[
            ("apt-get", &["libssl-dev"]),
            ("dnf", &["openssl-devel"]),
            ("apk", &["openssl-dev"]),
            ("pacman", &["openssl"]),
        ],
    ),
    (
        "python3",
        &[
            ("apt-get", &["python3"]),
            ("dnf", &["python3"]),
            ("apk", &["python3"]),
            ("pacman", &["python"]),
        ],
    ),
    (
        "ncurses-dev",
        &[
            ("apt-get", &["libncurses-dev"]),
            ("dnf", &["ncurses-devel"]),
            ("apk", &["ncurses-dev"]),
            ("pacman", &["ncurses"]),
        ],
    ),
    (
        "cron",
        &[
            ("apt-get", &["cron"]),
            ("dnf", &["cronie"]),
            ("apk", &["dcron"]),
            ("pacman", &["cronie"]),
        ],
    ),
];

/// The managers HostKit can drive.
pub const MANAGERS: &[&str] = &["apt-get", "dnf", "apk", "pacman"];

/// The distribution packages that `semantic` stands for under `manager`.
pub fn names(semantic: &str, manager: &str) -> Vec<String> {
    TABLE
        .iter()
        .find(|(s, _)| *s == semantic)
        .and_then(|(_, per)| per.iter().find(|(m, _)| *m == manager))
        .map(|(_, names)| names.iter().map(|n| n.to_string()).collect())
        .unwrap_or_else(|| vec![semantic.to_string()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semantic_names_map_per_manager_and_others_pass_through() {
        assert_eq!(names("build-essential", "dnf"), ["gcc", "gcc-c++", "make"]);
        assert_eq!(names("build-essential", "apk"), ["build-base"]);
        assert_eq!(names("openssl-dev", "apt-get"), ["libssl-dev"]);
        assert_eq!(names("tree", "pacman"), ["tree"]);
    }
}
