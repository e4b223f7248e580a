//! Man pages generated from the clap definitions (`kubectl-<plugin> __man [SUBCOMMAND]`)
//! match docs/man/. `KDB_UPDATE_MAN=1 cargo test --test integration man::` rewrites them.

use crate::common;

use std::path::Path;

const PLUGINS: [&str; 4] = ["dbdeploy", "dbcheck", "dbbackup", "dbpersist"];

fn man(plugin: &str, subcommand: Option<&str>) -> String {
    let mut cmd = common::clean_bin(&format!("kubectl-{plugin}"));
    cmd.arg("__man").args(subcommand);
    let output = cmd.output().unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn man_pages_match_the_clap_definitions() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/man");
    let update = std::env::var_os("KDB_UPDATE_MAN").is_some();
    let mut stale = Vec::new();
    for plugin in PLUGINS {
        let top = man(plugin, None);
        assert!(top.contains(&format!(".TH KUBECTL-{} 1", plugin.to_uppercase())));
        assert!(top.contains("\\-\\-kubeconfig"), "{top}");
        let mut pages = vec![(format!("kubectl-{plugin}.1"), top.clone())];
        // Subcommands are listed as `kubectl\-dbdeploy\-postgres(1)`.
        let prefix = format!("kubectl\\-{plugin}\\-");
        for line in top.lines() {
            let Some(sub) = line
                .strip_prefix(&prefix)
                .and_then(|l| l.strip_suffix("(1)"))
            else {
                continue;
            };
            if sub == "help" {
                continue;
            }
            pages.push((format!("kubectl-{plugin}-{sub}.1"), man(plugin, Some(sub))));
        }
        for (file, text) in pages {
            let path = dir.join(&file);
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
            } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(file);
            }
        }
    }
    assert!(
        stale.is_empty(),
        "docs/man is out of date ({}): run KDB_UPDATE_MAN=1 cargo test --test integration man::",
        stale.join(", ")
    );
}
