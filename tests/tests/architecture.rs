//! The Architecture Invariants of ARCHITECTURE.md that the code's shape must keep: crate
//! edges, and the Redis contract living in one module tree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use coldsend_tests::repo_root;

/// The workspace's own crates and the workspace crates each depends on (normal and build
/// dependencies; dev-dependencies do not ship).
fn workspace_edges() -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(repo_root())
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let names: BTreeSet<String> = packages.iter().filter_map(|p| p["name"].as_str()).map(str::to_owned).collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("deps")
                .iter()
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .filter_map(|d| d["name"].as_str())
                .filter(|d| names.contains(*d))
                .map(str::to_owned)
                .collect();
            (p["name"].as_str().expect("name").to_owned(), deps)
        })
        .collect()
}

#[test]
fn producer_and_worker_meet_only_through_redis() {
    let edges = workspace_edges();
    let deps = |c: &str| edges.get(c).cloned().unwrap_or_else(|| panic!("crate {c} missing: {edges:?}"));
    assert!(!deps("coldsend-worker").contains("coldsend-producer"), "the worker must not depend on the producer");
    assert!(!deps("coldsend-producer").contains("coldsend-worker"), "the producer must not depend on the worker");
    for shared in ["coldsend-core", "coldsend-service"] {
        let d = deps(shared);
        assert!(
            !d.contains("coldsend-producer") && !d.contains("coldsend-worker"),
            "{shared} is below both binaries: {d:?}"
        );
    }
    assert_eq!(deps("coldsend-core"), BTreeSet::new(), "core depends on no other coldsend crate");
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_redis_script_and_command_lives_in_core_storage() {
    let root = repo_root();
    let storage = root.join("crates/core/src/storage");
    let mut files = Vec::new();
    for c in ["core", "service", "producer", "worker"] {
        rust_files(&root.join("crates").join(c).join("src"), &mut files);
    }
    let mut offenders = Vec::new();
    for file in files.iter().filter(|f| !f.starts_with(&storage)) {
        let text = std::fs::read_to_string(file).expect("read");
        for needle in ["redis::cmd(", "redis::Script", "redis::pipe(", "AsyncCommands", "redis.call("] {
            if text.contains(needle) {
                offenders.push(format!("{} uses {needle}", file.strip_prefix(&root).unwrap_or(file).display()));
            }
        }
    }
    assert!(offenders.is_empty(), "Redis commands outside crates/core/src/storage:\n{}", offenders.join("\n"));
}

#[test]
fn every_lua_script_has_a_header_and_builds_no_key() {
    let dir = repo_root().join("crates/core/src/storage/lua");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("lua dir").flatten() {
        let text = std::fs::read_to_string(entry.path()).expect("read");
        let name = entry.file_name().to_string_lossy().into_owned();
        count += 1;
        assert!(text.lines().any(|l| l.starts_with("-- KEYS:")), "{name}: no KEYS header");
        // A key built from ARGV (concatenation) or taken from a hash field and then used as
        // a key would hide it from Redis Cluster; keys come from KEYS only (directly, or
        // through a local bound to KEYS entries alone).
        let mut key_locals: Vec<String> = Vec::new();
        for line in text.lines() {
            if let Some((names, values)) = line.trim().strip_prefix("local ").and_then(|l| l.split_once('='))
                && values.split(',').all(|v| v.trim().starts_with("KEYS["))
            {
                key_locals.extend(names.split(',').map(|n| n.trim().to_owned()));
            }
        }
        for line in text.lines().filter(|l| !l.trim_start().starts_with("--")) {
            assert!(!line.contains(".."), "{name}: builds a string (a key?) in Lua: {line}");
            for call in
                ["redis.call('HGET'", "redis.call('GET'", "redis.call('SET'", "redis.call('DEL'", "redis.call('ZADD'"]
            {
                if let Some(rest) = line.split(call).nth(1) {
                    let first_arg = rest.trim_start_matches(", ").split([',', ')']).next().unwrap_or("");
                    let from_keys = first_arg.starts_with("KEYS[") || key_locals.iter().any(|k| k == first_arg);
                    assert!(from_keys, "{name}: a key not from KEYS: {line}");
                }
            }
        }
        let wrappers: usize =
            ["accounts", "campaigns", "idle_watch", "ledger", "mailboxes", "oauth", "test_sends", "webhooks"]
                .iter()
                .map(|m| {
                    std::fs::read_to_string(dir.parent().expect("storage").join(format!("{m}.rs"))).expect("module")
                })
                .map(|src| {
                    // lua_script!(NAME, "file") or lua_script!(NAME, "file", functions: [...])
                    let loaded = src.split("lua_script!(").skip(1).filter_map(|call| call.split('"').nth(1));
                    loaded.filter(|file| *file == name.trim_end_matches(".lua")).count()
                })
                .sum();
        assert_eq!(wrappers, 1, "{name}: loaded by exactly one lua_script!(…) in core::storage");
    }
    assert!(count >= 20, "scripts found: {count}");
}
