//! Checks of what the manifests claim: the MSRV and duplicate versions.

use std::collections::{BTreeMap, BTreeSet};

use crate::cargo;

/// Crates the dependency graph holds in two versions, and who forces each.
/// Anything else duplicated fails `cargo xtask ci`; an entry here that is no
/// longer duplicated is reported so the list shrinks with the graph.
const ALLOWED_DUPLICATES: &[(&str, &str)] = &[
    ("http", "actix-web 4 is on http 0.2; axum, hyper and Rocket on 1"),
    ("base64", "hyper-util (under axum, Rocket and reqwest) is on 0.23; postgres-protocol and reqwest on 0.22, and ours with them"),
    ("crypto-common", "aes-gcm 0.10 (the last stable release) is on the 0.1 RustCrypto traits; sha2 0.11 / hmac 0.13 / hkdf 0.13 (ours and postgres-protocol's) on 0.2"),
    ("cpufeatures", "as crypto-common: aes 0.8 and polyval 0.6 on 0.2, sha2 0.11 on 0.3"),
    ("syn", "actix-macros is on syn 3, the rest of the graph on 2"),
    ("rand", "the demo's Prometheus exporter (metrics-util) is on 0.9; ours on 0.10 (the libraries do not depend on it)"),
    ("rand_core", "as rand"),
    ("getrandom", "as rand"),
    ("hashbrown", "metrics-util (the demo's Prometheus exporter) is on 0.16, indexmap and ours on 0.17"),
    ("pear", "Rocket's own parsers (rocket_http and rocket_codegen)"),
    ("pear_codegen", "as pear"),
    ("proc-macro2-diagnostics", "as pear"),
];

/// The workspace's `rust-version` against the highest `rust-version` any
/// locked dependency declares: the claim must not be below it.
pub(crate) fn msrv() -> Result<(), String> {
    // Only what builds here: the lockfile also lists crates of other
    // platforms (windows-*), which never build on this target.
    let host = host_triple()?;
    let output = cargo()
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--filter-platform",
        ])
        .arg(&host)
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str())
        .collect();
    let parse = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    let mut claimed: Option<String> = None;
    let mut highest: (Vec<u64>, Vec<String>) = (Vec::new(), Vec::new());
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let Some(version) = package["rust_version"].as_str() else {
            continue;
        };
        let name = package["name"].as_str().unwrap_or("?");
        if package["id"]
            .as_str()
            .is_some_and(|id| members.contains(id))
        {
            claimed.get_or_insert_with(|| version.to_owned());
            continue;
        }
        let v = parse(version);
        if v > highest.0 {
            highest = (v, vec![format!("{name} {version}")]);
        } else if v == highest.0 {
            highest.1.push(format!("{name} {version}"));
        }
    }
    let claimed = claimed.ok_or("no workspace member declares rust-version")?;
    println!(
        "rust-version {claimed}; highest among dependencies: {}",
        highest.1.join(", ")
    );
    if parse(&claimed) < highest.0 {
        return Err(format!(
            "rust-version {claimed} is below what dependencies need ({})",
            highest.1.join(", ")
        ));
    }
    Ok(())
}

/// The target triple rustc builds for by default.
fn host_triple() -> Result<String, String> {
    let output = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .map_err(|e| format!("rustc -vV: {e}"))?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .ok_or_else(|| "rustc -vV names no host".into())
}

/// `cargo tree -d` over normal dependencies: every crate found in two or
/// more versions must be in [`ALLOWED_DUPLICATES`].
pub(crate) fn duplicates() -> Result<(), String> {
    let output = cargo()
        .args([
            "tree",
            "--workspace",
            "--locked",
            "-e",
            "normal",
            "--duplicates",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .map_err(|e| format!("cargo tree: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo tree failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let mut versions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let mut words = line.split_whitespace();
        if let (Some(name), Some(version)) = (words.next(), words.next()) {
            versions
                .entry(name.to_owned())
                .or_default()
                .insert(version.to_owned());
        }
    }
    let duplicated: BTreeMap<_, _> = versions.into_iter().filter(|(_, v)| v.len() > 1).collect();
    let allowed: BTreeMap<&str, &str> = ALLOWED_DUPLICATES.iter().copied().collect();
    let mut unexpected = Vec::new();
    for (name, versions) in &duplicated {
        let versions = versions.iter().cloned().collect::<Vec<_>>().join(", ");
        match allowed.get(name.as_str()) {
            Some(why) => println!("{name} ({versions}): {why}"),
            None => unexpected.push(format!("{name} ({versions})")),
        }
    }
    for name in allowed.keys() {
        if !duplicated.contains_key(*name) {
            println!("{name} is no longer duplicated: drop it from ALLOWED_DUPLICATES");
        }
    }
    if unexpected.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "duplicate versions no framework forces: {}",
            unexpected.join("; ")
        ))
    }
}

/// Each adapter's README program (its `readme` example) built in a fresh
/// crate that depends on that adapter, its framework and tokio only, as a
/// new user would write it: the adapter must be the only session crate
/// needed. The crates share one target directory under `target/`, and the
/// workspace's lockfile, so versions match what the tests ran.
pub(crate) fn adapters_alone() -> Result<(), String> {
    let root = crate::workspace_root();
    let base = root.join("target/adapter-alone");
    let lockfile = std::fs::read(root.join("Cargo.lock")).map_err(|e| e.to_string())?;
    let frameworks: [(&str, &str); 3] = [
        ("session-axum", "axum = \"0.8\"\ntokio = { version = \"1\", features = [\"macros\", \"rt-multi-thread\", \"net\"] }"),
        ("session-actix", "actix-web = { version = \"4\", default-features = false, features = [\"macros\"] }"),
        ("session-rocket", "rocket = \"0.5\""),
    ];
    let mut failed = Vec::new();
    for (adapter, framework) in frameworks {
        let dir = base.join(format!("{adapter}-user"));
        std::fs::create_dir_all(dir.join("src")).map_err(|e| e.to_string())?;
        let manifest = format!(
            "[package]\nname = \"{adapter}-user\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
             [workspace]\n\n[dependencies]\n{adapter} = {{ path = {:?} }}\n{framework}\n",
            root.join(adapter)
        );
        std::fs::write(dir.join("Cargo.toml"), manifest).map_err(|e| e.to_string())?;
        std::fs::copy(
            root.join(adapter).join("examples/readme.rs"),
            dir.join("src/main.rs"),
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(dir.join("Cargo.lock"), &lockfile).map_err(|e| e.to_string())?;
        println!("{adapter}: building its README program alone");
        let built = cargo()
            .current_dir(&dir)
            .args(["build", "--quiet"])
            .env("CARGO_TARGET_DIR", base.join("target"))
            .status()
            .is_ok_and(|s| s.success());
        if !built {
            failed.push(adapter);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "these adapters' README programs do not build with the adapter alone: {}",
            failed.join(", ")
        ))
    }
}

/// Crates with a RustSec advisory that concerned this graph, and the
/// versions the advisory covers (`None`: every version). The full database
/// (`cargo audit`, `cargo deny check advisories`) needs github.com; this
/// list keeps what was removed from coming back where that is out of reach.
/// A crate name, its advisory, and whether a version (major, minor, patch)
/// is affected.
type Advisory = (&'static str, &'static str, fn(&[u64]) -> bool);

const KNOWN_ADVISORIES: &[Advisory] = &[
    ("fxhash", "RUSTSEC-2025-0057 (unmaintained)", |_| true),
    (
        "rand",
        "RUSTSEC-2026-0097 (unsound with a custom logger): fixed in 0.8.6, 0.9.3, 0.10.1",
        |v| {
            matches!(v, [0, 8, p, ..] if *p < 6)
                || matches!(v, [0, 9, p, ..] if *p < 3)
                || matches!(v, [0, 10, 0, ..])
        },
    ),
];

/// Fails when `Cargo.lock` holds a version [`KNOWN_ADVISORIES`] covers.
pub(crate) fn advisories() -> Result<(), String> {
    let lock = std::fs::read_to_string(crate::workspace_root().join("Cargo.lock"))
        .map_err(|e| format!("Cargo.lock: {e}"))?;
    let mut found = Vec::new();
    let mut name = "";
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = n.trim_matches('"');
        } else if let Some(v) = line.strip_prefix("version = ") {
            let version = v.trim_matches('"');
            let parts: Vec<u64> = version
                .split(['.', '-', '+'])
                .map_while(|p| p.parse().ok())
                .collect();
            for (crate_name, advisory, affected) in KNOWN_ADVISORIES {
                if *crate_name == name && affected(&parts) {
                    found.push(format!("{name} {version}: {advisory}"));
                }
            }
        }
    }
    println!(
        "{} known advisories checked against Cargo.lock (the full RustSec database needs github.com: see SECURITY.md)",
        KNOWN_ADVISORIES.len()
    );
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!("crates with advisories: {}", found.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::KNOWN_ADVISORIES;

    fn affected(name: &str, version: &[u64]) -> bool {
        KNOWN_ADVISORIES
            .iter()
            .any(|(n, _, affected)| *n == name && affected(version))
    }

    #[test]
    fn the_advisory_list_covers_the_affected_versions_only() {
        assert!(affected("fxhash", &[0, 2, 1]));
        for bad in [[0, 8, 5], [0, 9, 2], [0, 10, 0]] {
            assert!(affected("rand", &bad), "{bad:?}");
        }
        for good in [[0, 8, 6], [0, 9, 3], [0, 9, 5], [0, 10, 1], [0, 10, 3]] {
            assert!(!affected("rand", &good), "{good:?}");
        }
        assert!(!affected("rand_core", &[0, 9, 0]));
    }
}
