//! The release as Krew users get it: scripts/release.sh packs the archives and renders the
//! manifests; every `sha256` must be its archive's, Krew's own manifest validator
//! (sigs.k8s.io/krew/cmd/validate-krew-manifest) installs each manifest's every platform
//! from a loopback server, and the real Krew installs the plugins for kubectl to run.
//! Krew v0.4.3 and its validator are built from Go modules into ~/.cache/kubectl-db/krew/.
//!
//! The four-platform cross build (`make release`) costs ~50 CPU-minutes cold, so it runs
//! here only when its binaries are cached or with `KDB_TEST_RELEASE=1`; otherwise the test
//! packs this build's binaries for linux/amd64 and says that the rest was not run. Skips with
//! a printed reason when Go or kubectl is missing — and fails instead under
//! `KDB_REQUIRE_CLUSTER=1` (tests/cluster/cluster.sh build provides both).

use crate::common;

use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PLUGINS: [&str; 4] = ["dbdeploy", "dbcheck", "dbbackup", "dbpersist"];
const PLATFORMS: [&str; 4] = ["linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64"];
const KREW_VERSION: &str = "v0.4.3";

fn cache_dir() -> Option<PathBuf> {
    Some(PathBuf::from(std::env::var_os("HOME")?).join(".cache/kubectl-db"))
}

/// A command of the Krew module (`krew`, `validate-krew-manifest`), cached after its first
/// `go install`, with the flags of tests/cluster/cluster.sh's build of Krew.
fn krew_tool(name: &str) -> Result<PathBuf, String> {
    let dir = cache_dir().ok_or("no HOME")?.join("krew");
    let tool = dir.join(name);
    if tool.is_file() {
        return Ok(tool);
    }
    let go = Command::new("go").arg("version").output();
    if !go.is_ok_and(|o| o.status.success()) {
        return Err(format!("Go is not installed (needed to build {name})"));
    }
    let status = Command::new("timeout")
        .args(["900", "go", "install", "-trimpath", "-ldflags", "-s -w"])
        .arg(format!("sigs.k8s.io/krew/cmd/{name}@{KREW_VERSION}"))
        .env("GOBIN", &dir)
        .env("CGO_ENABLED", "0")
        .status()
        .map_err(|e| format!("go install: {e}"))?;
    if !status.success() || !tool.is_file() {
        return Err(format!(
            "go install sigs.k8s.io/krew/cmd/{name} failed: {status}"
        ));
    }
    Ok(tool)
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

/// Copies of this build's plugins, stripped (debug builds are ~200 MB each): the quick
/// path's linux/amd64 binaries.
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

/// A line on the test run's stderr even when the test passes (libtest captures only the
/// print macros): what was not run or not checked must not pass silently.
fn note(text: &str) {
    let _ = writeln!(std::io::stderr(), "krew: {text}");
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether the four-platform build runs: asked for, or its binaries already cached.
fn full_release() -> bool {
    if std::env::var("KDB_TEST_RELEASE").as_deref() == Ok("1") {
        return true;
    }
    let status = Command::new("bash")
        .arg(repo().join("scripts/release.sh"))
        .arg("--cache-status")
        .stdout(std::process::Stdio::null())
        .status();
    status.is_ok_and(|s| s.success())
}

/// `scripts/release.sh` into `work`: all four platforms, or linux/amd64 from this build.
fn release(work: &Path, full: bool) -> (PathBuf, PathBuf) {
    let (dist, manifests) = (work.join("dist"), work.join("krew"));
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("scripts/release.sh"))
        .env("KDB_RELEASE_DIST", &dist)
        .env("KDB_RELEASE_KREW_DIR", &manifests);
    if !full {
        let bins = work.join("bin");
        std::fs::create_dir_all(&bins).unwrap();
        binaries(&bins);
        cmd.env("KDB_RELEASE_BIN_DIR", &bins)
            .env("KDB_RELEASE_PLATFORMS", "linux/amd64");
    }
    run(&mut cmd);
    (dist, manifests)
}

fn read_manifest(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One platform entry of a manifest: `os/arch`, uri, sha256.
fn platforms(manifest: &serde_json::Value) -> Vec<(String, String, String)> {
    let entries = manifest["spec"]["platforms"].as_array().unwrap();
    entries
        .iter()
        .map(|p| {
            let labels = &p["selector"]["matchLabels"];
            let text = |v: &serde_json::Value| v.as_str().unwrap().to_string();
            (
                format!("{}/{}", text(&labels["os"]), text(&labels["arch"])),
                text(&p["uri"]),
                text(&p["sha256"]),
            )
        })
        .collect()
}

fn sha256_of(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn file_name(uri: &str) -> &str {
    uri.rsplit('/').next().unwrap()
}

/// The archives and manifests the script just wrote agree, and each archive holds the
/// plugin, its completion helper, LICENSE and README.md.
fn check_rendered(dist: &Path, manifests: &Path, built: &[&str]) {
    for plugin in PLUGINS {
        let manifest = read_manifest(&manifests.join(format!("{plugin}.yaml")));
        let entries = platforms(&manifest);
        let listed: Vec<&str> = entries.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(listed, built, "{plugin}: platforms listed");
        for (platform, uri, sha) in &entries {
            let archive = dist.join(file_name(uri));
            assert_eq!(&sha256_of(&archive), sha, "{plugin} {platform}: {uri}");
            let sum = std::fs::read_to_string(archive.with_extension("gz.sha256")).unwrap();
            assert_eq!(sum, format!("{sha}  {}\n", file_name(uri)));
            let listing = run(Command::new("tar").arg("tzf").arg(&archive)).stdout;
            let listing = String::from_utf8(listing).unwrap();
            for file in [
                format!("kubectl-{plugin}"),
                format!("kubectl_complete-{plugin}"),
                "LICENSE".into(),
                "README.md".into(),
            ] {
                assert!(
                    listing.lines().any(|l| l.trim_start_matches("./") == file),
                    "{file} missing from {uri}:\n{listing}"
                );
            }
        }
    }
}

/// The committed krew/ manifests are the script's output for all four platforms: with the
/// full build byte for byte (every sha256 is the one of the archive just built), otherwise
/// the same manifest but for the checksums.
fn check_committed(manifests: &Path, full: bool) {
    let mut zeros = 0;
    for plugin in PLUGINS {
        let path = repo().join(format!("krew/{plugin}.yaml"));
        let mut committed = read_manifest(&path);
        let mut rendered = read_manifest(&manifests.join(format!("{plugin}.yaml")));
        let committed_platforms = platforms(&committed);
        let listed: Vec<&str> = committed_platforms
            .iter()
            .map(|(p, _, _)| p.as_str())
            .collect();
        assert_eq!(listed, PLATFORMS, "krew/{plugin}.yaml: platforms");
        for (platform, _, sha) in &committed_platforms {
            let hex = sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit());
            assert!(hex, "krew/{plugin}.yaml {platform}: sha256 {sha:?}");
            zeros += usize::from(sha.bytes().all(|b| b == b'0'));
        }
        if full {
            let read = |p: &Path| std::fs::read_to_string(p).unwrap();
            assert_eq!(
                read(&path),
                read(&manifests.join(format!("{plugin}.yaml"))),
                "krew/{plugin}.yaml is not the output of this build: run `make release` and commit krew/"
            );
            continue;
        }
        // Quick path: only linux/amd64 was packed, from a debug build (other checksums):
        // every committed platform entry, with its os/arch and checksum set aside, is the
        // one rendered for linux/amd64, and the rest of the manifest is the same.
        let built = rendered["spec"]["platforms"][0].clone();
        let mut rendered_entry = built.clone();
        rendered_entry["sha256"] = "".into();
        for (entry, (platform, uri, _)) in committed["spec"]["platforms"]
            .as_array()
            .unwrap()
            .iter()
            .zip(&committed_platforms)
        {
            let mut entry = entry.clone();
            entry["sha256"] = "".into();
            entry["selector"] = built["selector"].clone();
            let suffix = format!("_{}.tar.gz", platform.replace('/', "_"));
            entry["uri"] = uri.replace(&suffix, "_linux_amd64.tar.gz").into();
            assert_eq!(entry, rendered_entry, "krew/{plugin}.yaml {platform}");
        }
        for manifest in [&mut committed, &mut rendered] {
            manifest["spec"]["platforms"] = serde_json::Value::Null;
        }
        assert_eq!(
            committed, rendered,
            "krew/{plugin}.yaml differs from scripts/release.sh's output: run `make release`"
        );
    }
    // Zeros: no release built yet for these sources. The full build fails on them (byte
    // comparison above); the quick path cannot tell a real checksum from a stale one, so it
    // says so instead.
    if zeros > 0 {
        note(&format!(
            "not checked: {zeros} of {} sha256s in krew/ are zeros (no release built yet): \
             run `make release` and commit krew/",
            PLUGINS.len() * PLATFORMS.len()
        ));
    }
}

/// Serves `dir`'s files over HTTP on the loopback interface, as a release page would: Krew
/// downloads an archive by its URI. Returns the base URL; the server lives as long as the
/// test process.
fn serve(dir: &Path) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let name = request
                .split(' ')
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/');
            let body = (!name.contains('/'))
                .then(|| std::fs::read(dir.join(name)).ok())
                .flatten();
            let mut stream = &stream;
            let _ = match body {
                Some(body) => write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .and_then(|()| stream.write_all(&body)),
                None => write!(
                    stream,
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                ),
            };
        }
    });
    base
}

/// Krew's validator over each manifest: the committed ones for their structure
/// (`-skip-install`: their URIs are the release page's), the rendered ones with their URIs
/// on a loopback server, so it installs every platform (download, sha256, LICENSE).
fn validate(validator: &Path, dist: &Path, manifests: &Path, work: &Path, path: &str) {
    let base = serve(dist);
    let served = work.join("served");
    std::fs::create_dir_all(&served).unwrap();
    for plugin in PLUGINS {
        let committed = repo().join(format!("krew/{plugin}.yaml"));
        let out = run(Command::new(validator)
            .arg(format!("-manifest={}", committed.display()))
            .arg("-skip-install"));
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(log.contains("structural validation OK"), "{log}");

        let rendered = std::fs::read_to_string(manifests.join(format!("{plugin}.yaml"))).unwrap();
        let mut text = String::new();
        for line in rendered.lines() {
            match line.strip_prefix("    uri: ") {
                Some(uri) => text += &format!("    uri: {base}/{}\n", file_name(uri)),
                None => text += &format!("{line}\n"),
            }
        }
        let manifest = served.join(format!("{plugin}.yaml"));
        std::fs::write(&manifest, text).unwrap();
        let out = run(Command::new("timeout")
            .arg("300")
            .arg(validator)
            .arg(format!("-manifest={}", manifest.display()))
            .env("PATH", path));
        let log = String::from_utf8_lossy(&out.stderr);
        let count = platforms(&read_manifest(&manifest)).len();
        assert!(
            log.contains(&format!("all {count} spec.platforms installed fine")),
            "{log}"
        );
    }
}

#[test]
fn release_archives_pass_krews_validator_and_install_with_krew() {
    let tools = krew_tool("krew").and_then(|k| Ok((k, krew_tool("validate-krew-manifest")?)));
    let (krew, validator) = match tools {
        Ok(tools) => tools,
        Err(reason) => {
            common::missing_tool(&reason);
            return;
        }
    };
    let Some(kubectl) = kubectl() else {
        common::missing_tool("no kubectl");
        return;
    };
    let full = full_release();
    let built: &[&str] = if full { &PLATFORMS } else { &PLATFORMS[..1] };
    if !full {
        note(
            "not run: the linux/arm64, darwin/amd64 and darwin/arm64 builds and the check of \
             krew/'s sha256s against them (their build is not cached: `make release` or \
             KDB_TEST_RELEASE=1 runs them); checked linux/amd64 from this build",
        );
    }
    let work = tempfile::tempdir().unwrap();
    let (dist, manifests) = release(work.path(), full);
    check_rendered(&dist, &manifests, built);
    check_committed(&manifests, full);

    // kubectl finds `kubectl krew` and the plugins on PATH, like a user's shell.
    let path_dir = work.path().join("path");
    std::fs::create_dir_all(&path_dir).unwrap();
    std::os::unix::fs::symlink(&krew, path_dir.join("kubectl-krew")).unwrap();
    std::os::unix::fs::symlink(&kubectl, path_dir.join("kubectl")).unwrap();
    let krew_root = work.path().join("krew-root");
    let path = format!(
        "{}:{}:/usr/local/bin:/usr/bin:/bin",
        krew_root.join("bin").display(),
        path_dir.display()
    );
    validate(&validator, &dist, &manifests, work.path(), &path);

    install_and_run(&kubectl, work.path(), &path, &dist, &manifests);
}

/// docs/install.md's Krew steps: install each plugin from its manifest and archive, kubectl
/// lists and runs it, completion through the copied helper, and an upgrade.
fn install_and_run(kubectl: &Path, work: &Path, path: &str, dist: &Path, manifests: &Path) {
    let krew_root = work.join("krew-root");
    let kubectl_cmd = |args: &[&str]| {
        let mut cmd = Command::new("timeout");
        cmd.arg("60")
            .arg(kubectl)
            .args(args)
            .env_clear()
            .env("PATH", path)
            .env("HOME", work)
            .env("KREW_ROOT", &krew_root)
            .env("KUBECONFIG", work.join("no-kubeconfig"))
            .stdin(std::process::Stdio::null());
        cmd
    };
    // docs/install.md's offline install: the manifest and the archive of this machine.
    let version = env!("CARGO_PKG_VERSION");
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

    // docs/install.md's (and the caveat's) step for completion: copy the helper from the
    // Krew store next to the plugin's link.
    let helper = krew_root.join(format!(
        "store/dbdeploy/v{version}/kubectl_complete-dbdeploy"
    ));
    run(Command::new("install")
        .args(["-m", "755"])
        .arg(&helper)
        .arg(krew_root.join("bin")));
    let complete = || {
        let out = run(&mut kubectl_cmd(&["__complete", "dbdeploy", "li"]));
        String::from_utf8(out.stdout).unwrap()
    };
    let expected = "list\tList the databases dbdeploy manages\n:4\n";
    assert_eq!(complete(), expected);

    // docs/install.md's upgrade: uninstall, install the (newer) manifest; the copied helper
    // runs whatever plugin Krew links next to it.
    // `krew uninstall` wants the plugin index `kubectl krew update` clones; offline, an empty
    // git repository stands in for it.
    run(Command::new("git")
        .args(["init", "-q"])
        .arg(krew_root.join("index/default")));
    run(&mut kubectl_cmd(&["krew", "uninstall", "dbdeploy"]));
    run(&mut kubectl_cmd(&[
        "krew",
        "install",
        &format!("--manifest={}", manifests.join("dbdeploy.yaml").display()),
        &format!(
            "--archive={}",
            dist.join(format!("kubectl-db-dbdeploy_{version}_linux_amd64.tar.gz"))
                .display()
        ),
    ]));
    assert_eq!(complete(), expected);
}

/// TLS is rustls: no OpenSSL in the dependency graph, so the release binaries need no
/// system library (scripts/release.sh checks each binary's dynamic dependencies too).
#[test]
fn no_openssl_in_the_dependency_graph() {
    let lock = std::fs::read_to_string(repo().join("Cargo.lock")).unwrap();
    for name in ["openssl", "openssl-sys", "native-tls"] {
        assert!(
            !lock.contains(&format!("name = \"{name}\"\n")),
            "Cargo.lock has {name}: the release binaries would need a system TLS library"
        );
    }
    assert!(lock.contains("name = \"rustls\"\n"));
}
