//! Krew installation with the real Krew (sigs.k8s.io/krew v0.4.3, built from Go modules and
//! cached under ~/.cache/kubectl-db/krew/): scripts/release.sh packs this build's binaries and
//! renders the manifests, `kubectl krew install --manifest --archive` installs each plugin
//! into a throwaway KREW_ROOT, and kubectl then finds and runs them. Skips with a printed
//! reason when neither the cached Krew nor Go is there, or kubectl is missing — and fails
//! instead under `KDB_REQUIRE_CLUSTER=1` (tests/cluster/cluster.sh build provides both).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PLUGINS: [&str; 4] = ["dbdeploy", "dbcheck", "dbbackup", "dbpersist"];
const KREW_VERSION: &str = "v0.4.3";

fn cache_dir() -> Option<PathBuf> {
    Some(PathBuf::from(std::env::var_os("HOME")?).join(".cache/kubectl-db"))
}

/// The cached Krew binary, built with `go install` on first use.
fn krew() -> Result<PathBuf, String> {
    let dir = cache_dir().ok_or("no HOME")?.join("krew");
    let krew = dir.join("krew");
    if krew.is_file() {
        return Ok(krew);
    }
    let go = Command::new("go").arg("version").output();
    if !go.is_ok_and(|o| o.status.success()) {
        return Err("Go is not installed (needed to build Krew)".into());
    }
    let status = Command::new("timeout")
        .args(["900", "go", "install"])
        .arg(format!("sigs.k8s.io/krew/cmd/krew@{KREW_VERSION}"))
        .env("GOBIN", &dir)
        .status()
        .map_err(|e| format!("go install: {e}"))?;
    if !status.success() || !krew.is_file() {
        return Err(format!(
            "go install sigs.k8s.io/krew/cmd/krew failed: {status}"
        ));
    }
    Ok(krew)
}

/// kubectl 1.26+ (plugin completion): the test cluster's build, else one on PATH.
fn kubectl() -> Option<PathBuf> {
    let cached = cache_dir()?.join("k8s-v1.34.4/bin/kubectl");
    if cached.is_file() {
        return Some(cached);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("kubectl"))
            .find(|p| p.is_file())
    })
}

/// Copies of this build's plugins, stripped (debug builds are ~200 MB each). The
/// `kubectl_complete-*` helpers are scripts that scripts/release.sh takes from completion/.
fn binaries(dir: &Path) {
    let all = [
        env!("CARGO_BIN_EXE_kubectl-dbdeploy"),
        env!("CARGO_BIN_EXE_kubectl-dbcheck"),
        env!("CARGO_BIN_EXE_kubectl-dbbackup"),
        env!("CARGO_BIN_EXE_kubectl-dbpersist"),
    ];
    for bin in all {
        let bin = Path::new(bin);
        let to = dir.join(bin.file_name().unwrap());
        let stripped = Command::new("strip")
            .arg("-o")
            .arg(&to)
            .arg(bin)
            .status()
            .is_ok_and(|s| s.success());
        if !stripped {
            std::fs::copy(bin, &to).unwrap();
        }
    }
}

fn run(cmd: &mut Command) -> Output {
    let output = cmd.output().unwrap();
    assert!(
        output.status.success(),
        "{cmd:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The manifest without the sha256 of the platform built here (it depends on the build).
fn without_built_sha(manifest: &str) -> String {
    manifest
        .lines()
        .filter(|l| !l.trim_start().starts_with("sha256:") || l.contains("not built"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn krew_installs_every_plugin_and_kubectl_runs_them() {
    let krew = match krew() {
        Ok(krew) => krew,
        Err(reason) => {
            common::missing_tool(&reason);
            return;
        }
    };
    let Some(kubectl) = kubectl() else {
        common::missing_tool("no kubectl");
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let (bins, dist, manifests) = (
        work.path().join("bin"),
        work.path().join("dist"),
        work.path().join("krew"),
    );
    std::fs::create_dir_all(&bins).unwrap();
    binaries(&bins);

    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    run(Command::new("bash")
        .arg(repo.join("scripts/release.sh"))
        .env("KDB_RELEASE_BIN_DIR", &bins)
        .env("KDB_RELEASE_DIST", &dist)
        .env("KDB_RELEASE_KREW_DIR", &manifests));

    let version = env!("CARGO_PKG_VERSION");
    for plugin in PLUGINS {
        // The committed manifests are the template's output, not hand edits.
        let rendered = std::fs::read_to_string(manifests.join(format!("{plugin}.yaml"))).unwrap();
        let committed = std::fs::read_to_string(repo.join(format!("krew/{plugin}.yaml"))).unwrap();
        assert_eq!(
            without_built_sha(&committed),
            without_built_sha(&rendered),
            "krew/{plugin}.yaml differs from scripts/release.sh's output: re-run it"
        );
        let archive = dist.join(format!("kubectl-db-{plugin}_{version}_linux_amd64.tar.gz"));
        let listing = run(Command::new("tar").arg("tzf").arg(&archive)).stdout;
        let listing = String::from_utf8(listing).unwrap();
        for file in [
            format!("kubectl-{plugin}"),
            format!("kubectl_complete-{plugin}"),
            "LICENSE".into(),
            "README.md".into(),
        ] {
            assert!(listing.lines().any(|l| l.trim_start_matches("./") == file));
        }
    }

    // kubectl finds `kubectl krew` and the plugins on PATH, like a user's shell.
    let path_dir = work.path().join("path");
    std::fs::create_dir_all(&path_dir).unwrap();
    std::os::unix::fs::symlink(&krew, path_dir.join("kubectl-krew")).unwrap();
    let krew_root = work.path().join("krew-root");
    let path = format!(
        "{}:{}:/usr/local/bin:/usr/bin:/bin",
        krew_root.join("bin").display(),
        path_dir.display()
    );
    let kubectl_cmd = |args: &[&str]| {
        let mut cmd = Command::new("timeout");
        cmd.arg("60")
            .arg(&kubectl)
            .args(args)
            .env_clear()
            .env("PATH", &path)
            .env("HOME", work.path())
            .env("KREW_ROOT", &krew_root)
            .env("KUBECONFIG", work.path().join("no-kubeconfig"))
            .stdin(std::process::Stdio::null());
        cmd
    };
    for plugin in PLUGINS {
        let manifest = manifests.join(format!("{plugin}.yaml"));
        let archive = dist.join(format!("kubectl-db-{plugin}_{version}_linux_amd64.tar.gz"));
        let out = run(&mut kubectl_cmd(&[
            "krew",
            "install",
            &format!("--manifest={}", manifest.display()),
            &format!("--archive={}", archive.display()),
        ]));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("Installed plugin: {plugin}")),
            "{stderr}"
        );
    }

    let list = run(&mut kubectl_cmd(&["plugin", "list"]));
    let list = String::from_utf8(list.stdout).unwrap();
    for plugin in PLUGINS {
        let installed = krew_root.join(format!("bin/kubectl-{plugin}"));
        assert!(
            list.lines().any(|l| Path::new(l) == installed),
            "{plugin} missing from kubectl plugin list:\n{list}"
        );
    }

    let help = run(&mut kubectl_cmd(&["dbdeploy", "--help"]));
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("Usage: kubectl dbdeploy"), "{help}");

    // docs/install.md's step for completion: link the helper from the Krew store.
    let helper = krew_root.join(format!(
        "store/dbdeploy/v{version}/kubectl_complete-dbdeploy"
    ));
    std::os::unix::fs::symlink(&helper, krew_root.join("bin/kubectl_complete-dbdeploy")).unwrap();
    let completion = run(&mut kubectl_cmd(&["__complete", "dbdeploy", "li"]));
    assert_eq!(
        String::from_utf8_lossy(&completion.stdout),
        "list\tList the databases dbdeploy manages\n:4\n"
    );
}
