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
