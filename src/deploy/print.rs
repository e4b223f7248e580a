//! How `dbdeploy`'s reports read on a terminal (`-o table`).

use std::fmt::Write;

use super::{DeleteReport, DeployReport, ListedDatabase, SecretInfo};
use crate::output::{self, Render, Width};

impl Render for DeployReport {
    fn render(&self, _width: Width) -> String {
        let action = if self.dry_run {
            "validated (server dry run)"
        } else {
            "applied"
        };
        let mut text = format!(
            "{} {}/{} ({}) {action}\n",
            self.engine, self.namespace, self.name, self.image
        );
        let mut table = output::table(&["kind", "name", "result"]);
        for object in &self.objects {
            table.add_row(vec![
                object.kind.clone(),
                object.name.clone(),
                object.outcome.to_string(),
            ]);
        }
        text.push_str(&output::table_text(&table));
        text.push('\n');
        for warning in &self.warnings {
            let _ = writeln!(text, "warning: {warning}");
        }
        text.push_str("connect:\n");
        for endpoint in &self.endpoints {
            let _ = writeln!(
                text,
                "  {:<8} {}:{}",
                endpoint.kind, endpoint.dns, endpoint.port
            );
        }
        let secret = &self.secret;
        let _ = writeln!(
            text,
            "secret:   {} (keys {}; {})",
            secret.name,
            secret.keys.join(", "),
            passwords_state(secret)
        );
        if let Some(snapshot) = &self.from_snapshot {
            let _ = writeln!(
                text,
                "data:     PVC data-{}-0 created from VolumeSnapshot {snapshot} (passwords of its database)",
                self.name
            );
        }
        for (key, value) in self.passwords.iter().flatten() {
            let _ = writeln!(text, "  {key}={value}");
        }
        if let Some(wait) = &self.wait {
            let _ = writeln!(text, "ready in {:.1}s", wait.elapsed_seconds);
        }
        if let Some(version) = &self.server_version {
            let _ = writeln!(text, "server:   {version}");
            let _ = writeln!(text, "databases: {}", self.databases.join(", "));
        }
        text
    }
}

fn passwords_state(secret: &SecretInfo) -> String {
    if secret.generated.is_empty() {
        "existing passwords kept".to_string()
    } else if secret.kept.is_empty() {
        "passwords generated".to_string()
    } else {
        format!(
            "kept {}, generated {}",
            secret.kept.join(", "),
            secret.generated.join(", ")
        )
    }
}

impl Render for DeleteReport {
    fn render(&self, _width: Width) -> String {
        let mut text = String::new();
        for object in &self.deleted {
            let _ = writeln!(text, "deleted {object}");
        }
        for object in &self.kept {
            let _ = writeln!(text, "kept    {object}");
        }
        for object in &self.not_managed {
            let _ = writeln!(
                text,
                "kept    {object}: not made by kubectl-dbdeploy for {}",
                self.name
            );
        }
        if !self.kept.is_empty() {
            let _ = writeln!(
                text,
                "(data kept: re-deploying {} reuses it; --purge-data removes it)",
                self.name
            );
        }
        text
    }
}

/// `list`: one line per database; nothing at all when there is none (the binary says so
/// on stderr, so a script reading stdout sees an empty table).
impl Render for Vec<ListedDatabase> {
    fn render(&self, _width: Width) -> String {
        if self.is_empty() {
            return String::new();
        }
        let mut table = output::table(&[
            "namespace",
            "name",
            "engine",
            "ready",
            "image",
            "service",
            "age",
        ]);
        for db in self {
            table.add_row(vec![
                db.namespace.clone(),
                db.name.clone(),
                db.engine
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "?".into()),
                db.ready.clone(),
                db.image.clone(),
                db.service.clone(),
                db.age_seconds.map(output::age).unwrap_or_default(),
            ]);
        }
        output::table_text(&table)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::apply::{Applied, Outcome};
    use crate::deploy::Endpoint;
    use crate::engine::Engine;
    use crate::wait::{WaitReport, WarningEvent};

    const WIDTH: Width = Width(100);

    fn applied(kind: &str, name: &str, outcome: Outcome) -> Applied {
        Applied {
            kind: kind.into(),
            name: name.into(),
            outcome,
        }
    }

    fn deployed() -> DeployReport {
        DeployReport {
            name: "orders".into(),
            namespace: "shop".into(),
            engine: Engine::Postgres,
            image: "postgres:15-alpine".into(),
            dry_run: false,
            objects: vec![
                applied("Secret", "orders-secret", Outcome::Created),
                applied("ConfigMap", "orders-config", Outcome::Configured),
                applied("Service", "orders", Outcome::Unchanged),
                applied("StatefulSet", "orders", Outcome::Created),
            ],
            secret: SecretInfo {
                name: "orders-secret".into(),
                keys: vec!["POSTGRES_PASSWORD".into(), "APP_PASSWORD".into()],
                kept: vec![],
                generated: vec!["POSTGRES_PASSWORD".into(), "APP_PASSWORD".into()],
            },
            endpoints: vec![
                Endpoint {
                    kind: "service".into(),
                    dns: "orders.shop.svc.cluster.local".into(),
                    port: 5432,
                },
                Endpoint {
                    kind: "pod".into(),
                    dns: "orders-0.orders-headless.shop.svc.cluster.local".into(),
                    port: 5432,
                },
            ],
            warnings: vec![],
            wait: Some(WaitReport {
                ready: true,
                elapsed_seconds: 23.456,
                pods: BTreeMap::new(),
                pvcs: BTreeMap::new(),
                warnings: vec![WarningEvent {
                    object: "Pod/orders-0".into(),
                    reason: "BackOff".into(),
                    message: "restarting".into(),
                    count: 1,
                }],
            }),
            server_version: Some("PostgreSQL 15.14".into()),
            databases: vec!["appdb".into(), "postgres".into()],
            passwords: None,
            from_snapshot: None,
        }
    }

    #[test]
    fn deploy_that_became_ready() {
        insta::assert_snapshot!(deployed().render(WIDTH));
    }

    #[test]
    fn deploy_with_warnings_kept_passwords_and_no_wait() {
        let mut report = deployed();
        report.dry_run = true;
        report.warnings = vec!["StorageClass standard cannot expand volumes".into()];
        report.secret.kept = vec!["POSTGRES_PASSWORD".into()];
        report.secret.generated = vec!["APP_PASSWORD".into()];
        report.passwords = Some(BTreeMap::from([
            ("APP_PASSWORD".to_string(), "not-a-real-one".to_string()),
            ("POSTGRES_PASSWORD".to_string(), "nor-this".to_string()),
        ]));
        report.wait = None;
        report.server_version = None;
        report.from_snapshot = Some("data-orders-0-20261203t080000z".into());
        insta::assert_snapshot!(report.render(WIDTH));
    }

    #[test]
    fn delete_of_everything_and_delete_that_kept_data() {
        let purged = DeleteReport {
            name: "orders".into(),
            namespace: "shop".into(),
            deleted: vec![
                "StatefulSet/orders".into(),
                "PersistentVolumeClaim/data-orders-0".into(),
                "Secret/orders-secret".into(),
            ],
            kept: vec![],
            not_managed: vec![],
        };
        insta::assert_snapshot!("delete_purged", purged.render(WIDTH));
        let kept = DeleteReport {
            kept: vec!["PersistentVolumeClaim/data-orders-0".into()],
            not_managed: vec!["Service/orders".into()],
            deleted: vec!["StatefulSet/orders".into()],
            ..purged
        };
        insta::assert_snapshot!("delete_kept", kept.render(WIDTH));
    }

    #[test]
    fn list_of_databases_and_of_none() {
        let listed = |name: &str, engine, ready: &str, age| ListedDatabase {
            namespace: "shop".into(),
            name: name.into(),
            engine,
            ready: ready.into(),
            image: "mysql:8.0".into(),
            service: format!("{name}.shop.svc:3306"),
            age_seconds: age,
        };
        let databases = vec![
            listed("orders", Some(Engine::Mysql), "1/1", Some(45)),
            listed("users", Some(Engine::Mariadb), "0/1", Some(3 * 3600)),
            listed("legacy", None, "1/1", Some(9 * 86_400)),
            listed("new", Some(Engine::Mysql), "0/1", None),
        ];
        insta::assert_snapshot!(databases.render(WIDTH));
        assert_eq!(Vec::<ListedDatabase>::new().render(WIDTH), "");
    }
}
