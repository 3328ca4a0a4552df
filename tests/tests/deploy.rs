//! The deployment files: systemd units verify and rate well; every Kubernetes manifest
//! validates against Kubernetes' schemas.

use std::process::Command;

use coldsend_tests::{bin, repo_root};

/// The units with ExecStart pointing at the binaries this build produced.
fn units() -> (tempfile::TempDir, Vec<std::path::PathBuf>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let built = bin("coldsend").parent().expect("bin dir").to_path_buf();
    let mut out = Vec::new();
    for unit in ["coldsend-worker.service", "coldsend-api.service"] {
        let text = std::fs::read_to_string(repo_root().join("deploy/systemd").join(unit)).expect("unit");
        let path = dir.path().join(unit);
        std::fs::write(&path, text.replace("/usr/local/bin/", &format!("{}/", built.display()))).expect("write");
        out.push(path);
    }
    (dir, out)
}

#[test]
fn systemd_units_verify_and_are_hardened() {
    let (_dir, units) = units();
    let out = Command::new("systemd-analyze").arg("verify").args(&units).output().expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
    for unit in &units {
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(unit)
            .output()
            .expect("systemd-analyze security");
        let text = String::from_utf8_lossy(&out.stdout);
        let score: f64 = text
            .lines()
            .find_map(|l| l.split("exposure level for").nth(1))
            .and_then(|rest| rest.split(':').nth(1))
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
        println!("{}: exposure {score}", unit.display());
        assert!(score <= 2.0, "{} exposure {score} (want ≤ 2.0, 'OK')", unit.display());
    }
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let out = Command::new("python3")
        .arg(repo_root().join("tests/python/validate_manifests.py"))
        .output()
        .expect("python3 (scripts/test.sh installs kubernetes-validate)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Deployment/coldsend-worker") && stdout.contains("StatefulSet/redis"), "{stdout}");
}

/// compose.yaml: Redis (healthy before the rest starts), the API and two workers from the
/// Dockerfile, sharing the encryption key and Redis URL, workers given time to drain.
#[test]
fn the_compose_file_brings_up_redis_the_api_and_two_workers() {
    let script = r#"
import json, sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
s = doc["services"]
print(json.dumps({
    "services": sorted(s),
    "api": s["api"]["command"], "worker": s["worker"]["command"],
    "replicas": s["worker"]["deploy"]["replicas"],
    "built": [s[n].get("build") for n in ("api", "worker")],
    "waits": [s[n]["depends_on"]["redis"]["condition"] for n in ("api", "worker")],
    "redis_urls": [s[n]["environment"]["COLDSEND_REDIS__URL"] for n in ("api", "worker")],
    "keys": [s[n]["environment"]["COLDSEND_ENCRYPTION_KEY"] for n in ("api", "worker")],
    "grace": s["worker"]["stop_grace_period"],
}))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(repo_root().join("compose.yaml"))
        .output()
        .expect("python3 with PyYAML (scripts/test.sh installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["services"], serde_json::json!(["api", "redis", "worker"]));
    assert_eq!(v["api"], serde_json::json!(["/usr/local/bin/coldsend", "serve"]));
    assert_eq!(v["worker"], serde_json::json!(["/usr/local/bin/coldsend-worker"]));
    assert_eq!(v["replicas"], 2);
    assert_eq!(v["built"], serde_json::json!([".", "."]));
    assert_eq!(v["waits"], serde_json::json!(["service_healthy", "service_healthy"]));
    assert_eq!(v["redis_urls"][0], v["redis_urls"][1]);
    assert_eq!(v["keys"][0], v["keys"][1]);
    assert_eq!(v["grace"], "35s");
}
