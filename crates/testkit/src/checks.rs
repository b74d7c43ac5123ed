//! Checks every service's tests make the same way: its configuration
//! documentation against `.env.example`, its migrations round trip, its copy
//! of the bus tables, one-line configuration errors from its binary.

use std::path::Path;
use std::process::Command;

/// Every variable in the `//! | `VAR` |` table of a service's `config.rs`
/// appears (set or commented out) in `.env.example`.
pub fn env_example_lists_config(manifest_dir: &str) {
    let root = Path::new(manifest_dir);
    let example = std::fs::read_to_string(root.join("../../.env.example")).unwrap_or_default();
    let documented = std::fs::read_to_string(root.join("src/config.rs")).unwrap_or_default();
    let variables: Vec<&str> = documented
        .lines()
        .filter_map(|l| l.strip_prefix("//! | `"))
        .filter_map(|l| l.split('`').next())
        .filter(|v| {
            v.chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
        })
        .collect();
    assert!(
        variables.len() >= 5,
        "no variable table found in {manifest_dir}/src/config.rs"
    );
    for variable in variables {
        assert!(
            example.lines().any(|l| l
                .trim_start_matches("# ")
                .starts_with(&format!("{variable}="))),
            "{variable} is not in .env.example"
        );
    }
}

/// The service's first migration carries the bus tables exactly.
pub fn migration_includes_bus_tables(manifest_dir: &str) {
    let dir = Path::new(manifest_dir).join("migrations");
    let first = std::fs::read_dir(&dir)
        .ok()
        .and_then(|entries| entries.flatten().map(|e| e.path()).min())
        .map(|p| p.join("up.sql"));
    let up = first
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    assert!(
        up.contains(bus::outbox::MIGRATION_SQL.trim()),
        "the bus tables in {} drifted from crates/bus/sql",
        dir.display()
    );
}

/// Runs `binary migrate` with only `variable=value` set and expects it to
/// fail with one line on stderr that names the variable, without echoing a
/// value that may be a secret.
pub fn bad_setting_is_one_line(binary: &str, variable: &str, value: &str) {
    let output = Command::new(binary)
        .arg("migrate")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(variable, value)
        .output();
    let output = match output {
        Ok(output) => output,
        Err(err) => panic!("cannot run {binary}: {err}"),
    };
    assert!(!output.status.success(), "{variable}={value} was accepted");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains(variable), "{stderr}");
}
