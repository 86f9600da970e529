//! The shared crates depend on each other in one direction only, in the order of the crate
//! map (README, "Crate map"), and a function's Lambda build links only what it uses.

use std::process::Command;

use jarvis_tests::workspace_root;

/// The shared crates, lowest first: each may import only crates before it.
const ORDER: [&str; 19] = [
    "crdt",
    "health",
    "schedule",
    "config",
    "queue",
    "secrets",
    "store",
    "blobs",
    "http",
    "identity",
    "replication",
    "realtime",
    "ai",
    "chat",
    "knowledge",
    "automations",
    "agents",
    "trading",
    "app",
];

fn jarvis_dependencies(crate_dir: &str) -> Vec<String> {
    let path = workspace_root()
        .join("shared")
        .join(crate_dir)
        .join("Cargo.toml");
    let manifest: toml::Table = std::fs::read_to_string(&path)
        .expect("manifest")
        .parse()
        .expect("toml");
    manifest
        .get("dependencies")
        .and_then(toml::Value::as_table)
        .map(|deps| {
            deps.keys()
                .filter_map(|name| name.strip_prefix("jarvis-").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_shared_crate_imports_only_crates_below_it() {
    for (position, name) in ORDER.iter().enumerate() {
        for dependency in jarvis_dependencies(name) {
            let below = ORDER[..position].contains(&dependency.as_str());
            assert!(
                below,
                "jarvis-{name} imports jarvis-{dependency}, which is not below it in the crate map"
            );
        }
    }
}

#[test]
fn every_crate_under_shared_is_on_the_map() {
    let mut found: Vec<String> = std::fs::read_dir(workspace_root().join("shared"))
        .expect("shared/")
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("Cargo.toml").is_file())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    found.sort();
    let mut mapped: Vec<String> = ORDER.iter().map(|s| (*s).to_owned()).collect();
    mapped.sort();
    assert_eq!(found, mapped);
}

#[test]
fn the_lambda_build_of_system_links_no_password_hashing_totp_sqlite_or_models() {
    let output = Command::new(env!("CARGO"))
        .current_dir(workspace_root())
        .args([
            "tree",
            "-p",
            "jarvis-fn-system",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .expect("cargo tree");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    let packages: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(
        packages.contains(&"aws-sdk-dynamodb"),
        "the deployed store is linked"
    );
    for absent in [
        "argon2",
        "totp-rs",
        "libsql",
        "libsql-ffi",
        "libsql-sys",
        "aws-sdk-bedrockruntime",
        "candle-core",
        "tokenizers",
    ] {
        assert!(!packages.contains(&absent), "system links {absent}");
    }
}
